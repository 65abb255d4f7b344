/*
 * ctlsock.h - the control loop's socket server, shared by the admin socket
 * and the stats listener: listeners (unix or TCP), batched accept with one
 * local-error policy, a client cap, per-client deadlines, bounded input
 * and output, and a linger before close. A service brings only its
 * parsing and answering, through struct ctlsock_ops.
 *
 *   listener --accept--> client --recv--> in[] --ops->run()--> out --send-->
 *                                                    |
 *       ctlsock_finish(): send what is left, SHUT_WR, discard input until
 *       EOF, the linger deadline or linger_max bytes, then close
 *
 * Runs in the control loop only and never blocks it: every socket is
 * non-blocking, input is capped at in_max, run() is called only while
 * less than out_high bytes wait to be sent (a client that does not read
 * stops being served instead of growing shoal's memory), an output buffer
 * grown by a big answer is freed once sent, and a client closed from a
 * callback is freed before the next poll. A new client is read once at
 * accept: a request that came with the connection is answered in the
 * same wake-up.
 */
#ifndef SHOAL_CTLSOCK_H
#define SHOAL_CTLSOCK_H

#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>
#include <stdbool.h>
#include <stddef.h>

#include <ev.h>

#include "conf.h"
#include "log.h"
#include "net.h"
#include "sbuf.h"

#define CTLSOCK_ACCEPT_BATCH	16	/* accepts per listener wake-up */
#define CTLSOCK_PAUSE_S		1.0	/* accept paused after EMFILE & co */
#define CTLSOCK_PATH_MAX	sizeof(((struct sockaddr_un *)0)->sun_path)
#define CTLSOCK_FDS_PER_MSG	200	/* SCM_RIGHTS per sendmsg (< SCM_MAX_FD) */

struct ctlsock;
struct ctlsock_client;

/* What a service tells the engine. */
struct ctlsock_ops {
	const char	*name;		/* log prefix: "admin", "stats" */
	size_t		 clients_max;	/* more: refused (after evict) */
	size_t		 in_max;	/* input buffered per client, bytes */
	size_t		 out_high;	/* run() waits above this backlog */
	int		 backlog;	/* listen(2) */
	double		 linger_s;	/* discard input this long at close */
	size_t		 linger_max;	/* ... or this many bytes; 0: no cap */
	const char	*busy;		/* sent to a refused client, or NULL */
	/*
	 * Consume input (ctlsock_in, ctlsock_consume) and append output
	 * (ctlsock_out) while ctlsock_pending() < out_high. Called when
	 * input arrived, at the peer's EOF, and whenever the output drained
	 * below out_high. Returns true if it has more to do without new
	 * input: the engine calls it again once the output drained. May
	 * call ctlsock_finish() or ctlsock_close().
	 */
	bool		(*run)(struct ctlsock_client *);
	/* A client was accepted (set its deadline and priv); may be NULL. */
	void		(*open)(struct ctlsock_client *);
	/* A client is closed: release priv. May be NULL. */
	void		(*close)(struct ctlsock_client *);
	/*
	 * The cap is reached and a new client waits: return a client to
	 * close in its favour, or NULL to refuse the new one. May be NULL.
	 */
	struct ctlsock_client *(*evict)(struct ctlsock *);
};

/* One client. The engine owns it; services read the fields marked so. */
struct ctlsock_client {
	struct ctlsock		*cs;
	int			 fd;		/* -1 once closed */
	void			*priv;		/* the service's state */
	char			 peer[NET_ADDRSTRLEN]; /* "unix" or "IP:PORT" */
	ev_tstamp		 accepted;	/* ev_now() at accept */
	bool			 eof;		/* read: the peer shut its side */
	bool			 is_unix;	/* accepted on a unix listener */
	/* Engine only. */
	ev_io			 io;
	int			 events;	/* current interest */
	ev_timer		 timer;		/* deadline or idle timeout */
	bool			 idle;		/* timer restarts on progress */
	bool			 busy;		/* run() has more to do */
	bool			 finishing;	/* close once out is sent */
	bool			 lingering;	/* FIN sent, discarding input */
	size_t			 drained;	/* bytes discarded lingering */
	struct sbuf		 out;		/* answers not yet sent */
	size_t			 outoff;	/* bytes of out already sent */
	int			*pass;		/* fds to pass (ctlsock_pass) */
	size_t			 npass;		/* ... how many */
	size_t			 passed;	/* ... sent (and closed) so far */
	size_t			 pass_at;	/* offset in out they go with */
	TAILQ_ENTRY(ctlsock_client) entry;
	size_t			 inlen;
	char			 in[];		/* [in_max + 1], NUL-terminated */
};

TAILQ_HEAD(ctlsock_client_list, ctlsock_client);

/* One listening socket of a service. */
struct ctlsock_listener {
	struct ctlsock		*cs;
	int			 fd;		/* -1 once closed */
	ev_io			 io;
	bool			 is_unix;
	char			 path[CTLSOCK_PATH_MAX]; /* unix: the file */
	dev_t			 dev;		/* unix: our file, removed... */
	ino_t			 ino;		/* ...only if it is still it */
	struct conf_addr	 addr;		/* TCP: bound address */
	LIST_ENTRY(ctlsock_listener) entry;	/* listeners, or dead */
};

/* A service: its listeners and clients. */
struct ctlsock {
	const struct ctlsock_ops *ops;
	struct ev_loop		*loop;
	LIST_HEAD(, ctlsock_listener) listeners;
	struct ctlsock_client_list clients;	/* oldest first */
	size_t			 nclients;
	struct ctlsock_client_list dead;	/* freed before the next poll */
	LIST_HEAD(, ctlsock_listener) dead_listeners; /* the same */
	ev_prepare		 reap;
	ev_timer		 pause;		/* accept paused (EMFILE & co) */
	uint64_t		 accepted;	/* clients ever accepted */
	uint64_t		 refused;	/* closed at accept: cap */
	uint64_t		 evicted;	/* closed for a newer client */
	struct ratelimit	 rl_accept;	/* accept errors */
	struct ratelimit	 rl_full;	/* refusals */
};

/* Set up a service (no listener yet) on loop. ops must outlive it. */
void	ctlsock_init(struct ctlsock *, struct ev_loop *,
	    const struct ctlsock_ops *);

/* Close every listener and client and free them; the service can be
 * initialised again. */
void	ctlsock_fini(struct ctlsock *);

/*
 * Open a TCP listener on a (SO_REUSEADDR, not SO_REUSEPORT) and start
 * accepting. Returns it, or NULL with errno.
 */
struct ctlsock_listener *ctlsock_listen_tcp(struct ctlsock *,
	    const struct conf_addr *a);

/*
 * Open a unix listener at path, mode 0600, creating its parent directory
 * (mode 0750) if missing. A stale socket file (nothing accepts on it) is
 * replaced; a live one (errno EADDRINUSE) or a file that is not a socket
 * is an error. Returns it, or NULL with errno and a reason in why.
 */
struct ctlsock_listener *ctlsock_listen_unix(struct ctlsock *,
	    const char *path, char *why, size_t wlen);

/*
 * Move the TCP listener *lp (may be NULL) to a, opening the new address
 * first so that on failure the old one keeps serving. A same-port
 * overlap (0.0.0.0:P -> 127.0.0.1:P) is bindable only once the old one is
 * closed: then the old one is closed first and taken back if the new one
 * fails. 0 with *lp the new listener, or -1 with errno (*lp the old one,
 * or NULL if even that could not be reopened).
 */
int	ctlsock_move_tcp(struct ctlsock *, struct ctlsock_listener **lp,
	    const struct conf_addr *a);

/* Close a listener (a unix one removes its file if it is still ours).
 * Its clients stay; its memory goes before the next poll (a command run
 * from its accept callback may close it). NULL is ignored. */
void	ctlsock_listener_close(struct ctlsock_listener *);

/* The stop hook of a service: close every listener (a unix one removes
 * its file if it is still ours) so that a successor can bind them; the
 * connected clients stay and are answered. */
void	ctlsock_stop_listening(struct ctlsock *);

/* The unread input (in_max at most, NUL-terminated) and its length. */
static inline char *
ctlsock_in(struct ctlsock_client *cl, size_t *len)
{
	*len = cl->inlen;
	return cl->in;
}

/* Drop the first n bytes of the input. */
void	ctlsock_consume(struct ctlsock_client *, size_t n);

/* Where answers are appended. An allocation failure closes the client. */
static inline struct sbuf *
ctlsock_out(struct ctlsock_client *cl)
{
	return &cl->out;
}

/* Bytes of output not yet sent. */
static inline size_t
ctlsock_pending(const struct ctlsock_client *cl)
{
	return cl->out.len - cl->outoff;
}

/*
 * Pass n open fds (SCM_RIGHTS) along the output appended after this call:
 * each line from there is sent with up to CTLSOCK_FDS_PER_MSG of them
 * until all are sent (the service must append at least a line per
 * CTLSOCK_FDS_PER_MSG fds). The engine owns fds (malloc'd) from a
 * successful call: each fd is closed once passed (the peer holds it then)
 * or when the client closes. Unix clients only. 0, or -1 with errno
 * (EPERM: not a unix client; EBUSY: earlier fds still in flight) and fds
 * left to the caller.
 */
int	ctlsock_pass(struct ctlsock_client *, int *fds, size_t n);

/* True if cl may be given fds now (a unix client with none in flight). */
static inline bool
ctlsock_can_pass(const struct ctlsock_client *cl)
{
	return cl->is_unix && cl->passed == cl->npass;
}

/*
 * The client's deadline, s seconds from now. idle: it restarts whenever
 * bytes move either way (an idle timeout); else it is fixed. When it
 * fires the client is closed.
 */
void	ctlsock_deadline(struct ctlsock_client *, double s, bool idle);

/* Close once the output is sent, after a linger (see above). */
void	ctlsock_finish(struct ctlsock_client *);

/* Close now (why: for the debug log). The memory goes before the next
 * poll; cl->fd is -1 afterwards. */
void	ctlsock_close(struct ctlsock_client *, const char *why);

/* Ask for malloc_trim() soon (once, from a timer): after freeing big
 * buffers, give the memory back to the system. */
void	ctlsock_trim_later(struct ev_loop *);

#endif /* SHOAL_CTLSOCK_H */
