/*
 * relay.h - moving bytes between the two sides of a connection pair.
 *
 * A relay is two symmetric sides, each with a pointer to its peer, its own
 * counters and its own role (what the owner wants to hear about that side).
 * The relay knows nothing of sessions, servers or workers: its owner (the
 * session) embeds a struct relay, fills in the loop, the buffer pool, the
 * roles and the one exit, and is told through those. relay_copy() is
 * written once and serves both directions.
 */
#ifndef SHOAL_RELAY_H
#define SHOAL_RELAY_H

#include <ev.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "buf.h"

struct relay;
struct relay_side;

/* A side's role: what its owner is told about it. Hooks may be NULL. */
struct relay_role {
	const char	*name;		/* "client", "server" */
	const char	*term_fail;	/* termination code if it fails: "CD" */
	/* The first bytes were read from this side. */
	void		(*first_read)(struct relay_side *);
	/* This side failed (reset, broken pipe); the relay closes next. */
	void		(*failed)(struct relay_side *);
	/* Both directions ended and were flushed; the relay closes next. */
	void		(*ended)(struct relay_side *);
};

/* One end of the pair: the client side or the server side. */
struct relay_side {
	int			 fd;		/* -1 when closed */
	ev_io			 io;		/* its watcher; data = this side */
	int			 events;	/* current interest */
	bool			 rd_eof;	/* read returned 0 */
	bool			 rd_short;	/* last read drained the socket */
	bool			 bulk;		/* last read was >= BUF_SIZE: streaming */
	bool			 nosplice;	/* splice refused (EINVAL): copy only */
	bool			 wr_shut;	/* we sent FIN to it */
	bool			 spoke;		/* a byte was read from it */
	/* TLS (tls = yes on its frontend or backend): bytes to and from
	 * this side go through ssl, after its handshake. */
	SSL			*ssl;		/* NULL: plain TCP */
	bool			 ssl_more;	/* a read stopped on a full
						   buffer: ssl may hold more
						   than epoll can tell */
	bool			 rd_wants_wr;	/* its read waits for writable */
	bool			 wr_wants_rd;	/* a write to it waits for
						   readable */
	bool			 shut_pending;	/* close_notify still to send */
	struct buf		*buf;		/* read from here, not yet written to peer */
	int			 pipe[2];	/* splice pipe while streaming, or -1 */
	size_t			 inpipe;	/* read from here, in the pipe, not yet written */
	ev_tstamp		 active;	/* last byte moved on this side */
	uint64_t		 sent;		/* bytes written to this side */
	_Atomic uint64_t	*sent_total;	/* a shared counter of the same, or NULL */
	const struct relay_role	*role;
	struct relay_side	*peer;		/* the other end */
	struct relay		*r;		/* owner */
};

struct relay {
	struct relay_side	 cli;
	struct relay_side	 srv;
	uint32_t		 prefix;	/* head bytes of cli.buf that are
						   ours (a PROXY header), not
						   the client's; 0 once sent */
	struct ev_loop		*loop;
	struct buf_pool		*bufs;		/* the thread's buffers */
	/* The owner's one exit: close both sides (with RSTs if rst). */
	void			(*close)(struct relay *, const char *term,
				    bool rst);
};

/* Answers of relay_connect_send(). */
enum {
	RELAY_SENT,		/* bytes went to the server: it is connected */
	RELAY_WAIT,		/* nothing to send yet, or not writable yet */
	RELAY_CONNFAIL,		/* the connect failed (errno) */
	RELAY_CLOSED,		/* the relay was closed */
};

/* Set up a relay's two sides (fds -1, roles, peers); loop, bufs and close
 * are the caller's to fill in. */
void	relay_init(struct relay *, const struct relay_role *cli,
	    const struct relay_role *srv);

/*
 * While the server connects: read what the client has sent already (only
 * if `read_client`) and send it to the server at once. RELAY_SENT,
 * RELAY_WAIT, RELAY_CONNFAIL (errno) or RELAY_CLOSED.
 */
int	relay_connect_send(struct relay *, bool read_client);

/*
 * Put len bytes of our own (a PROXY header for the server) ahead of what
 * the client sent; relay_connect_send() sends them first, with the
 * client's first bytes when it reads them. 0, or -1 (ENOMEM, or the
 * client's bytes fill the buffer). relay_unprefix() takes them back after
 * a failed connect, before trying another server.
 */
int	relay_prefix(struct relay *, const void *, size_t len);
void	relay_unprefix(struct relay *);

/* The server is connected: pass on what the client sent meanwhile and let
 * bytes flow both ways from now on. */
void	relay_start(struct relay *);

/* The libev callback of both sides' watchers while relaying. */
void	relay_io_cb(struct ev_loop *, ev_io *, int);

/* Stop a side's watcher and close its fd (with an RST if rst), freeing
 * its SSL (a clean close has sent close_notify already). */
void	relay_side_close(struct relay_side *, bool rst);

/* Give back what a side holds for relaying: its buffer to the pool, its
 * pipe to the thread's pipe pool (or closed if not empty). */
void	relay_side_fini(struct relay_side *);

/* Close the calling thread's pooled pipes (it has no relay left). */
void	relay_pipes_release(void);

/* [global] splice: whether streaming sides may use splice(2). Any thread;
 * read at each use, so a reload applies at once. */
void	relay_set_splice(bool);

#endif /* SHOAL_RELAY_H */
