/*
 * worker.h - frontends, listeners and worker threads.
 *
 * Each worker runs its own libev loop with its own SO_REUSEPORT listening
 * socket per bind address. It accepts, picks and relays; on that path it
 * takes no lock and makes no blocking call. The control loop steers workers
 * only through worker_command(), which sets flags and wakes the loop.
 */
#ifndef SHOAL_WORKER_H
#define SHOAL_WORKER_H

#include <ev.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "buf.h"
#include "conf.h"
#include "frontend.h"
#include "server.h"
#include "session.h"

/* One worker's listening socket for one bind address of a frontend. */
struct listener {
	struct worker		*w;
	struct frontend		*fe;
	struct conf_addr	 addr;		/* what it is bound to */
	int			 fd;		/* -1 once closed */
	ev_io			 io;
	bool			 paused;	/* at a connection limit */
};

/* A message from the control loop to a worker (worker_post()). */
enum wmsg_type {
	WMSG_ADD_LISTENER,	/* take fd as a listener of fe at addr */
	WMSG_DEL_LISTENER,	/* close the listener of fe at addr */
	WMSG_SET_FRONTEND,	/* listeners at addr now belong to fe */
	WMSG_KILL_SERVER,	/* close (RST) every session on srv */
};

struct wmsg {
	enum wmsg_type		 type;
	struct frontend		*fe;
	struct conf_addr	 addr;
	int			 fd;		/* ADD: owned by the message */
	struct server		*srv;		/* KILL: a reference, dropped */
	struct wmsg		*next;
};

#define WCMD_WAKE	0x01u	/* pass a quiescent point (QSBR) */
#define WCMD_CLOSE_LISTEN 0x02u	/* stop accepting: close listeners */
#define WCMD_KILL_ALL	0x04u	/* close every session now */
#define WCMD_EXIT	0x08u	/* leave the loop */
#define WCMD_MBOX	0x10u	/* messages wait in the mailbox */
#define WCMD_TUNE	0x20u	/* re-read proxy_tuning (reload) */

struct worker {
	int			 id;
	pthread_t		 thread;
	bool			 running;	/* thread started */
	struct ev_loop		*loop;
	ev_async		 wake;		/* worker_command() */
	ev_check		 quiescent;	/* QSBR: after every poll */
	ev_prepare		 reap;		/* frees closed sessions */
	ev_timer		 resume;	/* retries paused listeners */
	ev_tstamp		 emfile_until;	/* accept paused by EMFILE */
	struct listener		**listeners;	/* [nlisteners], worker-owned */
	size_t			 nlisteners;
	size_t			 listeners_cap;
	pthread_mutex_t		 mbox_lock;	/* control -> worker messages */
	struct wmsg		*mbox;		/* FIFO head */
	struct wmsg		**mbox_tail;
	struct session_home	 home;		/* its sessions */
	struct buf_pool		 bufs;
	uint64_t		 rng;		/* PRNG state */
	_Atomic uint64_t	 qsbr;		/* QSBR slot */
	_Atomic unsigned	 cmd;		/* WCMD_* pending */
};

/* Process-wide counters and limits shared by the workers. */
struct proxy_limits {
	_Atomic int		 maxconn;	/* [global] maxconn */
	_Atomic uint32_t	 cur;		/* active client sessions */
	_Atomic uint64_t	 total;		/* ever accepted */
};

extern struct proxy_limits proxy_limits;

/* [global] tuning, set by the control loop (start, reload), read by workers. */
struct proxy_tuning {
	_Atomic uint32_t	 io_collect_us;	/* [global] io_collect */
};

extern struct proxy_tuning proxy_tuning;

/*
 * Create worker id (of nworkers) with its listening sockets for every bind
 * address of every frontend (listen_obtain(): inherited ones, else one
 * new SO_REUSEPORT socket). Returns NULL (errno, message in log) if a
 * bind fails.
 */
struct worker	*worker_new(int id, int nworkers, struct frontend **,
		    size_t nfrontends);
void		 worker_free(struct worker *);

/* Start the worker's thread; 0 or -1. */
int		 worker_start(struct worker *);

/*
 * Post a message to a worker (control loop). The worker applies messages
 * in order at its next wake-up; the message (and an ADD's fd) is owned by
 * the worker from then on. 0, or -1 (ENOMEM: nothing posted, fd kept).
 */
int		 worker_post(struct worker *, enum wmsg_type, struct frontend *,
		    const struct conf_addr *, int fd);

/* Close every session of srv on every worker (admin "shutdown sessions");
 * they end with term KD and an RST to both peers. 0 or -1 (ENOMEM). */
int		 workers_kill_server(struct worker **, size_t, struct server *);

/* Post WCMD_* flags to a worker and wake it. Any thread. */
void		 worker_command(struct worker *, unsigned cmd);

/* Join a worker that was sent WCMD_EXIT. */
void		 worker_join(struct worker *);

/* Release a slot reserved at accept (session end). */
void		 proxy_release_slot(struct frontend *);

#endif /* SHOAL_WORKER_H */
