/*
 * balance.h - choosing a server: two verbs, pick and done.
 *
 * The algorithms (roundrobin, leastconn, source, random, first) are static
 * functions behind one small ops table. Picking reads only the immutable
 * pool and the servers' atomic counters: no lock, no allocation.
 *
 * The balancer owns the pool: the server table hands it the eligible
 * servers of a backend (balance_pool_new) and swaps the result in.
 * Knowledge goes one way: balance reads the fields of struct server but
 * calls nothing of the table; the table calls balance. Server lifetimes
 * are the table's: it takes a pool's references on its servers and a
 * session's on the server it was given (server_pool_new, server_pick).
 */
#ifndef SHOAL_BALANCE_H
#define SHOAL_BALANCE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "server.h"

/* One group of eligible servers (primaries or backups) in a pool. */
struct pool_group {
	size_t			 n;		/* eligible servers */
	struct server		**srv;		/* [n], the table holds a reference */
	uint32_t		*seq;		/* weighted, interleaved order */
	uint32_t		 seqlen;	/* its length */
	uint32_t		*ring;		/* source: sorted ring points */
	uint32_t		*ring_srv;	/* source: server index per point */
	uint32_t		 nring;
};

/* An immutable snapshot of a backend, what workers pick from. */
struct pool {
	struct backend		*be;
	const struct balance_ops *ops;
	uint32_t		 timeout_connect_ms;
	uint32_t		 timeout_server_ms;
	uint32_t		 timeout_queue_ms;
	int			 retries;
	int			 send_proxy;	/* SEND_PROXY_*, for servers
						   without their own */
	int			 nall;		/* servers in the table */
	struct pool_group	 primary;
	struct pool_group	 backup;
	uint64_t		 retired;	/* the table's QSBR epoch of the swap */
	struct pool		*next_retired;	/* the table's list of retired pools */
};

#define PICK_MAX_TRIED	17	/* 1 + the largest `retries` */

/* What one pick needs to know and reports back. */
struct pick {
	const struct sockaddr	*client;	/* for source hashing */
	struct server		*tried[PICK_MAX_TRIED]; /* never pick these */
	int			 ntried;
	uint64_t		*rng;		/* the worker's PRNG state */
	bool			 full;		/* out: candidates were all at maxconn */
	bool			 dry;		/* balance_peek: take no slot, move
						   no cursor */
};

struct balance_ops {
	const char	*name;
	/* Precompute the group's tables; 0 or -1 (ENOMEM). */
	int		 (*build)(struct pool_group *);
	/* A server with a slot taken (cur + 1), or NULL. */
	struct server	*(*pick)(struct pool *, struct pool_group *,
			    struct pick *);
};

const struct balance_ops *balance_ops_get(enum conf_balance);

/*
 * Build a pool for be from its eligible servers srv[n] (backups go to the
 * backup group), with the backend's settings and balance algorithm. The
 * caller keeps the servers alive as long as the pool lists them (the
 * table's server_pool_new() takes a reference on each). Returns the pool,
 * owned by the caller until balance_pool_free(), or NULL (ENOMEM).
 */
struct pool	*balance_pool_new(struct backend *, struct server *const *srv,
		    size_t n);

/* Free a pool; its servers are left alone. Accepts NULL. */
void		 balance_pool_free(struct pool *);

/*
 * Choose an eligible server of the pool, skipping pk->tried. On success
 * the server has one more active session (a slot), freed with
 * balance_done(); it lives as long as the pool does (sessions use the
 * table's server_pick(), which also takes a reference). NULL if none:
 * pk->full tells whether servers exist but are all at their maxconn
 * (worth waiting). Backup servers are used only when no primary remains
 * to try.
 */
struct server	*balance_pick(struct pool *, struct pick *);

/*
 * The server a pick for a new session from client would give now, taking
 * nothing and moving no cursor (shoalctl explain); *backup tells whether
 * it is a backup. random is not predictable: the answer is one possible
 * pick. NULL when none would be given (all full, or no server).
 */
struct server	*balance_peek(struct pool *, const struct sockaddr *client,
		    bool *backup);

/* The session ended: free its slot. Accepts NULL. */
void		 balance_done(struct server *);

/* A xorshift64* step; the state must not be 0. */
uint64_t	 balance_rand(uint64_t *state);

/* The hash used for source balancing, over the address only (no port). */
uint32_t	 balance_addr_hash(const struct sockaddr *);

#endif /* SHOAL_BALANCE_H */
