/*
 * balance.h - choosing a server: two verbs, pick and done.
 *
 * The algorithms (roundrobin, leastconn, source, random) are static
 * functions behind one small ops table. Picking reads only the immutable
 * pool and the servers' atomic counters: no lock, no allocation.
 */
#ifndef SHOAL_BALANCE_H
#define SHOAL_BALANCE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "server.h"

#define PICK_MAX_TRIED	17	/* 1 + the largest `retries` */

/* What one pick needs to know and reports back. */
struct pick {
	const struct sockaddr	*client;	/* for source hashing */
	struct server		*tried[PICK_MAX_TRIED]; /* never pick these */
	int			 ntried;
	uint64_t		*rng;		/* the worker's PRNG state */
	bool			 full;		/* out: candidates were all at maxconn */
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

/* Build both groups' tables of a new pool; 0 or -1 (ENOMEM). */
int		 balance_build(struct pool *);

/* Free what balance_build() allocated in a group. */
void		 balance_group_free(struct pool_group *);

/*
 * Choose an eligible server of the pool, skipping pk->tried. On success
 * the server has one more active session and a reference owned by the
 * caller, released with balance_done(). NULL if none: pk->full tells
 * whether servers exist but are all at their maxconn (worth waiting).
 * Backup servers are used only when no primary remains to try.
 */
struct server	*balance_pick(struct pool *, struct pick *);

/* The session ended: free its slot and drop its reference. */
void		 balance_done(struct server *);

/* A xorshift64* step; the state must not be 0. */
uint64_t	 balance_rand(uint64_t *state);

/* The hash used for source balancing, over the address only (no port). */
uint32_t	 balance_addr_hash(const struct sockaddr *);

#endif /* SHOAL_BALANCE_H */
