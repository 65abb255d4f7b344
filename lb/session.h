/*
 * session.h - one client connection and its server connection.
 *
 * A session lives on one worker. It goes (HEADER: reading a PROXY header
 * ->) (HANDSHAKE: TLS termination ->) (PREREAD: reading a ClientHello to
 * route by SNI, when not terminating ->) QUEUED (waiting
 * for a server slot) -> CONNECTING -> RELAY and ends in exactly one place, session_close(),
 * which stops its watchers, closes its fds, logs one line and defers the
 * free to before the worker's next poll.
 *
 * Knowledge goes one way: the worker owns sessions and calls session_*;
 * a session knows of its worker only the struct session_home it was given.
 */
#ifndef SHOAL_SESSION_H
#define SHOAL_SESSION_H

#include <ev.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <netinet/in.h>

#include "balance.h"
#include "buf.h"
#include "clientid.h"
#include "frontend.h"
#include "relay.h"

struct session;
struct session_home;

enum session_state {
	SS_HEADER = 0,		/* reading the client's PROXY header */
	SS_PREREAD,		/* reading the TLS ClientHello (routes) */
	SS_HANDSHAKE,		/* tls = yes: the client's TLS handshake */
	SS_QUEUED,		/* every server at maxconn: waiting */
	SS_CONNECTING,		/* connect in progress */
	SS_RELAY,		/* bytes flow */
	SS_CLOSED,		/* closed, waiting to be freed */
};

struct session {
	struct session_home	*home;		/* the worker it lives on */
	struct frontend		*fe;
	struct backend		*be;
	struct server		*server;	/* current, with a slot and a ref */
	enum session_state	 state;
	struct relay		 r;		/* the client and server sides */
	struct pick		 pk;		/* servers tried so far */
	int			 attempts;	/* connects started */
	int			 retries;	/* further attempts allowed */
	uint32_t		 timeout_client_ms;
	uint32_t		 timeout_server_ms;
	uint32_t		 timeout_connect_ms;
	uint32_t		 timeout_queue_ms;
	ev_timer		 timer;		/* connect, queue or idle deadline */
	ev_tstamp		 t_accept;
	ev_tstamp		 t_connect;	/* last connect started */
	ev_tstamp		 t_ready;	/* first wanted a server (after
						   its prelude), 0 = not yet */
	ev_tstamp		 t_first_connect; /* first connect started, 0 = none */
	struct backend		*queued_be;	/* counted in its `queued` while
						   waiting for a first server */
	bool			 fault_hold;	/* connected, held by an injected
						   delay (CONNECTING) */
	ev_tstamp		 t_connected;	/* 0 until connected */
	struct sockaddr_storage	 client;	/* the PROXY header's source, if
						   one came; else the peer */
	socklen_t		 clientlen;
	struct sockaddr_in6	 dst;		/* the client's destination as a
						   PROXY header gave it (family
						   0: our local address) */
	struct proxy_read	*pr;		/* SS_HEADER: the header so far */
	struct client_policy	*held;		/* counted in its per-source
						   table: released at close */
	bool			 routed;	/* be chosen by SNI: keep it */
	bool			 preread;	/* a ClientHello was looked for */
	char			*sni;		/* its server name, or NULL */
	bool			 tls;		/* the client's handshake is over */
	const char		*tls_ver;	/* client side "1.3", or NULL */
	const char		*srv_tls_ver;	/* server side, or NULL */
	char			 alpn[32];	/* chosen with the client, "" */
	const char		*term;		/* two-letter termination code */
	TAILQ_ENTRY(session)	 entry;		/* worker's live list */
	struct session		*next_dead;	/* worker's free-later list */
};

TAILQ_HEAD(session_list, session);

/*
 * What a session needs of the worker it lives on: its loop, buffer pool
 * and PRNG, the live list and the closed ones to free before the next
 * poll (session_reap). Owned by the worker, given at session_start().
 */
struct session_home {
	struct ev_loop		*loop;
	struct buf_pool		*bufs;
	uint64_t		*rng;		/* PRNG state for picking */
	struct session_list	 sessions;	/* live */
	size_t			 nsessions;
	struct session		*dead;		/* closed, free before next poll */
	/* A session gave back its slot (it ended, or could not start):
	 * release it in fe and the process counts, resume accepting. */
	void			(*slot_freed)(struct session_home *,
				    struct frontend *);
};

/*
 * Take an accepted client fd (ownership passes to the session) and start
 * connecting to a server of the frontend's backend. The session slot in
 * the frontend and process counters is already reserved by the caller and
 * released by session_close().
 */
void	session_start(struct session_home *, struct frontend *, int fd,
	    const struct sockaddr *, socklen_t);

/*
 * The one exit. term is the two-letter code ("--" normal; first letter who
 * ended it: C client, S server, c/s client/server timeout, K killed,
 * R resource, P policy (clientid.h); second the phase: P PROXY header,
 * A access list, L/R per-source conn/rate limit, F untrusted header
 * sender, H TLS handshake, Q queue, C connect, D data). If rst, both
 * fds are closed with an RST. Safe to call more than once.
 */
void	session_close(struct session *, const char *term, bool rst);

/* Free the sessions closed since the last call (before the next poll). */
void	session_reap(struct session_home *);

#endif /* SHOAL_SESSION_H */
