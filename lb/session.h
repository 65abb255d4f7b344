/*
 * session.h - one client connection and its server connection.
 *
 * A session lives on one worker. It goes QUEUED (waiting for a server slot)
 * -> CONNECTING -> RELAY and ends in exactly one place, session_close(),
 * which stops its watchers, closes its fds, logs one line and defers the
 * free to before the worker's next poll.
 */
#ifndef SHOAL_SESSION_H
#define SHOAL_SESSION_H

#include <ev.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include "balance.h"
#include "buf.h"

struct worker;
struct frontend;
struct session;

/* One end of a session: the client side or the server side. */
struct side {
	int			 fd;		/* -1 when closed */
	ev_io			 io;		/* its watcher */
	int			 events;	/* current interest */
	bool			 rd_eof;	/* read returned 0 */
	bool			 rd_short;	/* last read drained the socket */
	bool			 bulk;		/* last read was >= BUF_SIZE: streaming */
	bool			 nosplice;	/* splice refused (EINVAL): copy only */
	bool			 wr_shut;	/* we sent FIN to it */
	struct buf		*buf;		/* read from here, not yet written to peer */
	int			 pipe[2];	/* splice pipe while streaming, or -1 */
	size_t			 inpipe;	/* read from here, in the pipe, not yet written */
	struct side		*peer;		/* the other end */
	struct session		*s;		/* owner */
	char			 who;		/* 'C' client, 'S' server */
};

enum session_state {
	SS_QUEUED = 0,		/* every server at maxconn: waiting */
	SS_CONNECTING,		/* connect in progress */
	SS_RELAY,		/* bytes flow */
	SS_CLOSED,		/* closed, waiting to be freed */
};

struct session {
	struct worker		*w;		/* owner */
	struct frontend		*fe;
	struct backend		*be;
	struct server		*server;	/* current, with a slot and a ref */
	enum session_state	 state;
	struct side		 cli;
	struct side		 srv;
	struct pick		 pk;		/* servers tried so far */
	int			 attempts;	/* connects started */
	bool			 srv_spoke;	/* the server sent a byte */
	int			 retries;	/* further attempts allowed */
	uint32_t		 timeout_client_ms;
	uint32_t		 timeout_server_ms;
	uint32_t		 timeout_connect_ms;
	uint32_t		 timeout_queue_ms;
	ev_timer		 timer;		/* connect, queue or idle deadline */
	ev_tstamp		 t_accept;
	ev_tstamp		 t_connect;	/* last connect started */
	ev_tstamp		 t_connected;	/* 0 until connected */
	ev_tstamp		 cli_active;	/* last byte moved on the client side */
	ev_tstamp		 srv_active;	/* same, server side */
	uint64_t		 bytes_in;	/* client to server, forwarded */
	uint64_t		 bytes_out;	/* server to client, forwarded */
	struct sockaddr_storage	 client;
	socklen_t		 clientlen;
	const char		*term;		/* two-letter termination code */
	TAILQ_ENTRY(session)	 entry;		/* worker's live list */
	struct session		*next_dead;	/* worker's free-later list */
};

TAILQ_HEAD(session_list, session);

/*
 * Take an accepted client fd (ownership passes to the session) and start
 * connecting to a server of the frontend's backend. The session slot in
 * the frontend and process counters is already reserved by the caller and
 * released by session_close().
 */
void	session_start(struct worker *, struct frontend *, int fd,
	    const struct sockaddr *, socklen_t);

/*
 * The one exit. term is the two-letter code ("--" normal; first letter who
 * ended it: C client, S server, c/s client/server timeout, K killed,
 * R resource; second the phase: Q queue, C connect, D data). If rst, both
 * fds are closed with an RST. Safe to call more than once.
 */
void	session_close(struct session *, const char *term, bool rst);

/* Free the sessions closed since the last call (before the next poll). */
void	session_reap(struct worker *);

/* relay.c: the copy routine and interest computation. */
enum {
	RELAY_SENT,		/* bytes went to the server: it is connected */
	RELAY_WAIT,		/* nothing to send yet, or not writable yet */
	RELAY_CONNFAIL,		/* the connect failed (errno) */
	RELAY_CLOSED,		/* the session was closed */
};

int	relay_connect_send(struct session *, bool read_client);
void	relay_start(struct session *);
void	relay_io_cb(struct ev_loop *, ev_io *, int);

/* Give back what a side holds for relaying: its buffer to the worker's
 * pool, its pipe to the worker's pipe pool (or closed if not empty). */
void	relay_side_fini(struct session *, struct side *);

/* Close the calling worker's pooled pipes (it has no session left). */
void	relay_pipes_release(void);

/* Record activity on a side (idle timeouts). */
void	session_touch(struct session *, struct side *);

#endif /* SHOAL_SESSION_H */
