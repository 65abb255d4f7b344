/*
 * server.h - the server table: backends, their servers, and the immutable
 * snapshots ("pools") that worker threads pick from.
 *
 * Ownership and threads:
 *  - The table is written only by the control loop (main thread): adding,
 *    removing, changing state or weight. Every change that affects picking
 *    ends with server_publish(backend), which has the balancer build a new
 *    pool (server_pool_new) and swaps it in atomically. Workers only ever
 *    read the current pool. The table knows nothing of a pool's insides.
 *  - A pool is freed only once every worker has passed a quiescent point
 *    after the swap (QSBR): workers never keep a pool pointer beyond the
 *    callback that loaded it.
 *  - Servers are refcounted. The table holds one reference, every pool that
 *    lists the server holds one, every session using it holds one. A server
 *    removed from the table leaves selection at once and is freed when the
 *    last session lets go.
 *  - Live counters are relaxed atomics written by workers, read by the
 *    control loop (stats, leastconn).
 */
#ifndef SHOAL_SERVER_H
#define SHOAL_SERVER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include "conf.h"
#include "hist.h"
#include "net.h"
#include "tls.h"

struct pool;			/* balance.h: what workers pick from */
struct scale_state;		/* scale.h: a backend's scaling */
struct pick;			/* balance.h: one session's picking state */

enum server_source {
	SRC_STATIC = 0,		/* from the config file */
	SRC_ANNOUNCED,		/* from discovery */
	SRC_ADMIN,		/* added through the admin socket */
	SRC_DNS,		/* found in DNS: [backend] resolve */
};

enum server_admin {
	ADM_READY = 0,		/* takes new sessions */
	ADM_DRAIN,		/* no new sessions, existing ones continue */
	ADM_MAINT,		/* no new sessions, not checked */
};

enum server_health {
	HEALTH_CHECKING = 0,	/* new or returning: no traffic until rise */
	HEALTH_UP,
	HEALTH_DOWN,
};

struct backend;

/* Fault injection (shoalctl set server B/S fault ...), for teaching: acts
 * on the server's new sessions. */
enum server_fault {
	FAULT_NONE = 0,
	FAULT_DELAY,		/* hold the session fault_delay_ms once
				   connected, before relaying */
	FAULT_RESET,		/* the connect fails at once (as refused) */
	FAULT_BLACKHOLE,	/* the connect never completes: timeout */
};

/* Latency signals measured on real traffic, per server. */
enum server_lat {
	LAT_CONNECT = 0,	/* connect started -> connected (TCP and TLS) */
	LAT_TTFB,		/* connected -> the server's first byte */
	LAT_SESSION,		/* connected -> the session's end */
	LAT_MAX,
};

struct server {
	_Atomic int		 refs;		/* table + pools + sessions */
	struct backend		*be;		/* owner; lives until exit */
	char			 name[CONF_NAME_MAX];
	struct sockaddr_storage	 addr;		/* where sessions connect */
	socklen_t		 addrlen;
	char			 addrstr[NET_ADDRSTRLEN]; /* "1.2.3.4:80" */
	uint32_t		 name_hash;	/* for the source ring */

	/* Written by the control loop only; workers read these. */
	_Atomic int		 weight;	/* 0..256; 0 = never picked */
	_Atomic uint32_t	 eff_weight;	/* what balancing uses, in
						   1/LOADWEIGHT_SCALE of a weight
						   unit: weight bent by the
						   reported load and slow start
						   (server_publish) */
	_Atomic int		 maxconn;	/* 0 = unlimited */
	_Atomic int		 send_proxy;	/* SEND_PROXY_*; UNSET: the
						   backend's (the pool's) */
	_Atomic int		 fault;		/* enum server_fault */
	_Atomic uint32_t	 fault_delay_ms; /* FAULT_DELAY's */

	/* Control loop only. */
	bool			 backup;	/* only when no primary is usable */
	enum server_source	 source;
	enum server_admin	 admin;
	enum server_health	 health;
	bool			 announce_up;	/* announced servers: not draining */
	char			 label[64];	/* announced label TLV, "" = none */
	bool			 in_table;	/* false once removed */
	double			 last_change;	/* ev_time() of the last state change */
	double			 elig_since;	/* ev_time() it became eligible
						   (slow start), 0 = not eligible */
	bool			 load_have;	/* a load report arrived */
	int			 load;		/* its value, as reported */
	double			 load_at;	/* ev_time() it arrived */
	uint32_t		 load_interval_ms; /* reporter's interval */
	int64_t			 load_conns;	/* connections it reports, -1 */
	void			*check;		/* health/ private state */
	char			 check_result[16]; /* last check: "L4OK", "L7STS"... */
	char			 check_detail[96]; /* its detail, e.g. "HTTP 500" */
	double			 check_duration_ms; /* how long it took */
	double			 last_check;	/* ev_time() of its end, 0 = never */
	TAILQ_ENTRY(server)	 entry;		/* backend's list */
	struct server		*name_next;	/* backend's name index chain */

	/* Written by workers, relaxed atomics. */
	_Atomic uint32_t	 cur;		/* active sessions */
	_Atomic uint64_t	 total;		/* sessions ever started */
	_Atomic uint64_t	 bytes_in;	/* client to server */
	_Atomic uint64_t	 bytes_out;	/* server to client */
	_Atomic uint64_t	 connect_fail;	/* failed connects */
	_Atomic uint32_t	 fail_streak;	/* consecutive connect failures */

	/* Latency histograms (hist.h): workers add, the control loop reads;
	 * lat_win: their recent windows, made at the first traffic. */
	struct hist		 lat[LAT_MAX];
	struct hist_window	*lat_win;	/* [LAT_MAX] or NULL */

	/* TLS origination: the last resumable session it gave, for the
	 * next connect (tls.c, under its lock; gen: the tls_be it is from). */
	SSL_SESSION		*tls_sess;
	uint64_t		 tls_sess_gen;
};

TAILQ_HEAD(server_list, server);

struct backend {
	char			 name[CONF_NAME_MAX];
	_Atomic(struct pool *)	 pool;		/* current snapshot */
	_Atomic uint64_t	 rr;		/* round-robin cursor */

	/* Control loop only. */
	struct conf_backend	 conf;		/* settings (servers not kept) */
	struct server_list	 servers;
	size_t			 nservers;
	struct server		**names;	/* name index: [nnames] chains */
	size_t			 nnames;	/* 0 or a power of two */
	size_t			 ndiscovered;
	_Atomic int		 fall;		/* passive threshold, for workers */
	/* tls = yes: the client context servers are reached with (tls.h);
	 * NULL: plain TCP. Swapped by every reload. */
	_Atomic(struct tls_be *) tls;
	struct tls_counters	 tls_stats;	/* server handshakes */
	/* Time from accept to the first connect, for every session that
	 * started one, and its recent window (control loop). */
	struct hist		 queue;
	struct hist_window	 queue_win;
	/* Sessions waiting for a first server now (workers, relaxed). */
	_Atomic uint32_t	 queued;
	/* Scale conditions' state and hook (scale.h); NULL until used. */
	struct scale_state	*scale;
	TAILQ_ENTRY(backend)	 entry;
};

TAILQ_HEAD(backend_list, backend);

/* Create a backend from its config, its static servers joining through
 * server_join(), and publish its first pool. NULL with errno on failure.
 * The backend lives until backend_free(). */
struct backend	*backend_new(const struct conf_backend *);

/* Free a backend and its servers; only at exit, after the workers stopped. */
void		 backend_free(struct backend *);

/*
 * The table's door. Every source of servers (the config file at start and
 * on reload, announcements, the admin socket) joins and leaves through
 * these calls, and only the table writes a server's fields. Whatever
 * follows servers (health checks) subscribes to the events below through
 * the one observer that lb/main.c installs; a source never calls it.
 *
 * Every call runs in the control loop. A call that changes what workers
 * may pick republishes the backend's pool, at once or, between
 * table_batch_begin() and table_batch_end(), once per backend at the end.
 */

/* What a source knows about a server it brings. */
struct server_spec {
	const char		*name;		/* unique in its backend */
	const struct sockaddr	*addr;		/* where sessions connect */
	socklen_t		 addrlen;
	int			 weight;	/* 0 = never picked */
	int			 maxconn;	/* 0 = unlimited */
	bool			 backup;
	bool			 draining;	/* announced as draining */
	const char		*label;		/* announced label, NULL = none */
	enum server_health	 health;	/* with checks; 0 = checking */
	bool			 own_send_proxy; /* send_proxy is its own; else
						   the backend's */
	enum conf_send_proxy	 send_proxy;
};

/* The spec of a server line of the config (its init_state included). */
void		 server_spec_conf(struct server_spec *,
		    const struct conf_server *);

/*
 * Add a server: its health starts as the spec says (`checking` unless it
 * says otherwise) when the backend has checks, else `up`. The observer hears `joined`, then the pool is
 * republished. Returns the server (owned by the table; take a reference
 * to keep it past server_leave()) or NULL with errno: EEXIST for a name
 * already in the backend, ENOMEM.
 */
struct server	*server_join(struct backend *, const struct server_spec *,
		    enum server_source);

/*
 * Take a server out of the table: the observer hears `leaving` while the
 * server is still listed, then it leaves selection (the pool is
 * republished). Sessions in flight and other holders keep their
 * references; the last one frees it. No-op for a server already out.
 */
void		 server_leave(struct server *);

/* Set (or clear: FAULT_NONE) fault injection; logs and records it. */
void		 server_set_fault(struct server *, enum server_fault,
		    uint32_t delay_ms);
const char	*server_fault_name(enum server_fault);

/* Set the weight (0..256); logs "weight A -> B (why)" and republishes.
 * No-op if unchanged. The only writer of the weight. */
void		 server_set_weight(struct server *, int weight, const char *why);

/* Reload: maxconn and backup of a static server, as in its new config
 * line; logged when they change. */
/* A static server's own send_proxy (SEND_PROXY_*), from a reload. */
void		 server_set_send_proxy(struct server *, enum conf_send_proxy);
void		 server_set_limits(struct server *, int maxconn, bool backup);

/* Announced servers: up or draining (logged with a stamp of last_change,
 * republished when it changes) and the label TLV ("" = none). */
void		 server_set_announced(struct server *, bool up,
		    const char *label);

/* Health reports a check's outcome: code ("L4OK", "L7STS"...), detail,
 * duration and when it ended. State changes go through
 * server_set_health(). */
void		 server_set_check_result(struct server *, const char *code,
		    const char *detail, double duration_ms, double when);

/*
 * A backend takes new settings (reload; its servers are not in cb). The
 * observer hears `backend_changed` with the settings it had, and decides
 * for itself what that means to it.
 */
void		 backend_set_conf(struct backend *, const struct conf_backend *cb);

/*
 * A backend leaves the table (reload removed it): the observer hears
 * `leaving` for each of its servers. They stay listed in its last pool so
 * that sessions already routed there finish; backend_free() at exit.
 */
void		 backend_retire(struct backend *);

/* Publish once per changed backend at the end of a batch (a wake-up's
 * announcements, an expiry sweep, a reload). Batches nest. */
void		 table_batch_begin(void);
void		 table_batch_end(void);

/*
 * The table's events, to one observer. Each callback may be NULL. They
 * run inside the call that caused them and may use the setters above
 * (server_set_health() among them), but must not join or leave servers.
 */
struct table_observer {
	/* A server entered the table (any source, backend_new() too). */
	void	(*joined)(struct server *);
	/* A server is leaving; it is still listed and readable. */
	void	(*leaving)(struct server *);
	/* Its admin state (ready, drain, maint) changed. */
	void	(*admin_changed)(struct server *);
	/* A backend took new settings; `was` holds the previous ones. */
	void	(*backend_changed)(struct backend *,
		    const struct conf_backend *was);
};

/* Install the observer (NULL: none). The table keeps the pointer. */
void		 table_set_observer(const struct table_observer *);

/*
 * Low level, for server.c and the table's unit tests: add or remove a
 * server with no event and no publish. Sources use server_join() and
 * server_leave().
 */
struct server	*server_add(struct backend *, const char *name,
		    const struct sockaddr *, socklen_t, int weight, int maxconn,
		    bool backup, enum server_source);
void		 server_remove(struct server *);

/*
 * A server at sa would forward every session to shoal itself: the bind of
 * conf's frontends it reaches (net_reaches), or NULL. Sources refuse such
 * a server (the config with FILE:LINE, the admin socket with an error,
 * discovery as `policy`).
 */
const struct conf_addr *server_addr_loops(const struct conf *,
		    const struct sockaddr *sa);

/* Find a server of a backend by name, or NULL. */
struct server	*server_find(struct backend *, const char *name);

/*
 * Control loop: change a server's health or admin state. Logs one line
 * with the reason ("app/s1: up -> down (L4CON: connection refused, 3ms)"),
 * stamps last_change and republishes the pool. No-op if unchanged. An
 * admin change is told to the observer (`admin_changed`).
 */
void		 server_set_health(struct server *, enum server_health,
		    const char *reason);
void		 server_set_admin(struct server *, enum server_admin,
		    const char *reason);

/*
 * Passive health, from worker threads: a connect to the server failed (or
 * it reset a session before sending a byte), or a session succeeded (the
 * server sent a byte, or the session ended cleanly). Connect failures are
 * also counted in connect_fail by the caller.
 * Failures grow fail_streak; when it reaches the backend's `fall`, the hook
 * installed with server_set_passive_hook() is called (from the worker
 * thread: it must only wake the control loop). Success resets the streak.
 */
void		 server_note_failure(struct server *);
void		 server_note_success(struct server *);
void		 server_set_passive_hook(void (*)(void));

/*
 * The effective weight of s at ev_time() now (LOADWEIGHT_SCALE units): its
 * weight bent by its load report and its backend's slowstart
 * (loadweight.h). server_publish() stores it in s->eff_weight for every
 * eligible server.
 */
uint32_t	 server_eff_weight_at(const struct server *, double now);

/*
 * A load report (0-100; -1: none) and the connections it counts (-1:
 * none) from a server's announcement, whose
 * announcer speaks every interval_ms. Republishes if the effective weight
 * moves.
 */
void		 server_set_load(struct server *, int load, int64_t conns,
		    uint32_t interval_ms);

/*
 * Republish every backend where an eligible server's effective weight has
 * moved (a slow start ramping, a load report arriving or going stale).
 * The control loop calls it every SERVER_WEIGHTS_TICK seconds.
 */
#define SERVER_WEIGHTS_TICK	0.5
void		 server_weights_tick(struct backend_list *);

/* True if the server may take new sessions (health, admin, weight). */
bool		 server_eligible(const struct server *);

/* The summary state shown to users: up, down, checking, drain, maint. */
const char	*server_state_name(const struct server *);
const char	*server_source_name(enum server_source);
/* The facts behind it: "checking", "up", "down"; "ready", "drain", "maint". */
const char	*server_health_name(enum server_health);
const char	*server_admin_name(enum server_admin);

/* Take and drop a reference. The last unref frees the server. */
void		 server_ref(struct server *);
void		 server_unref(struct server *);

/*
 * A pool from the balancer over srv[n] (balance_pool_new), holding a
 * reference on each of its servers; NULL (ENOMEM). server_pool_free()
 * drops them and frees the pool; accepts NULL.
 */
struct pool	*server_pool_new(struct backend *, struct server *const *srv,
		    size_t n);
void		 server_pool_free(struct pool *);

/*
 * Sessions: balance_pick() plus a reference owned by the caller, so the
 * server outlives its removal from the table; server_done() frees the
 * slot and drops the reference (accepts NULL).
 */
struct server	*server_pick(struct pool *, struct pick *);
void		 server_done(struct server *);

/*
 * Build a new pool for the backend from the table and swap it in. The old
 * pool is retired and freed once all workers were quiescent. 0 or -1
 * (ENOMEM: the old pool stays).
 */
int		 server_publish(struct backend *);

/* server_publish() for a change already made: a failure is logged (the
 * old pool stays until the next publish). Inside a table batch it waits
 * for table_batch_end(). */
void		 server_republish(struct backend *);

/* Workers: the current pool. Valid until the calling callback returns. */
static inline struct pool *
backend_pool(struct backend *be)
{
	return atomic_load_explicit(&be->pool, memory_order_acquire);
}

/*
 * QSBR. Each worker registers a slot and stores qsbr_epoch() into it at
 * every loop iteration. The control loop calls qsbr_reclaim() periodically;
 * qsbr_set_waker() installs a function that wakes idle workers so they pass
 * a quiescent point soon after a swap.
 */
void		 qsbr_register(_Atomic uint64_t *slot);
void		 qsbr_unregister(_Atomic uint64_t *slot);
uint64_t	 qsbr_epoch(void);
void		 qsbr_set_waker(void (*)(void));
void		 qsbr_reclaim(void);
/*
 * Retire any object the control loop unpublished: free_fn(arg) runs from
 * qsbr_reclaim() once every worker passed a quiescent point since, and
 * busy(arg) (NULL: never busy) answers false: holds taken by sessions
 * before the swap are given back. 0, or -1 (ENOMEM: the caller keeps it).
 */
int		 qsbr_defer(void (*free_fn)(void *), bool (*busy)(void *),
		    void *arg);
/* Free every retired pool and deferred object now; only when no worker
 * runs. */
void		 qsbr_drain(void);

#endif /* SHOAL_SERVER_H */
