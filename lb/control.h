/*
 * control.h - the control loop: it owns the config, the server table, the
 * workers and the process lifecycle (signals, graceful stop, systemd).
 */
#ifndef SHOAL_CONTROL_H
#define SHOAL_CONTROL_H

#include <ev.h>
#include <stdbool.h>

#include "conf.h"
#include "discovery_view.h"
#include "server.h"
#include "worker.h"

#define CONTROL_STRAY_SIGNALS	5	/* SIGALRM SIGUSR1 SIGUSR2 SIGVTALRM SIGIO */

struct control {
	struct ev_loop		*loop;		/* the default loop, main thread */
	struct conf		*conf;		/* current configuration */
	const char		*conf_path;	/* NULL: the embedded default */
	struct frontend		**old_frontends; /* removed by reloads */
	size_t			 nold_frontends;
	struct backend_list	 old_backends;	/* removed by reloads */
	unsigned		 reloads;	/* successful reloads */
	char			 reload_error[CONF_ERR_MAX]; /* last failure, "" */
	struct backend_list	 backends;
	struct frontend		**frontends;	/* [nfrontends] */
	size_t			 nfrontends;
	struct worker		**workers;	/* [nworkers] */
	size_t			 nworkers;
	ev_signal		 sig_term, sig_int, sig_hup;
	ev_signal		 sig_stray[CONTROL_STRAY_SIGNALS]; /* logged, ignored */
	ev_timer		 reclaim;	/* QSBR reclamation */
	ev_timer		 weights;	/* effective weights move */
	ev_timer		 watchdog;	/* WATCHDOG=1 */
	ev_timer		 stop;		/* graceful stop progress */
	ev_tstamp		 stop_deadline;
	bool			 stopping;
	ev_tstamp		 started;
	const struct discovery_view *discovery;	/* wired by main.c, or NULL */
	const struct dns_view	*dns;		/* wired by main.c, or NULL */
};

/* Take the config (owned from now on) and set up the control loop. path
 * is the file SIGHUP re-reads (NULL: the embedded default, not reloadable). */
int	control_init(struct control *, struct conf *, const char *path);

/*
 * SIGHUP: parse and validate the file first; on any error keep running the
 * old config and log the FILE:LINE error. On success apply it in place:
 * binds that stay keep their sockets, servers with the same backend, name
 * and address keep their state, counters and sessions; announced and
 * admin-added servers stay; removed servers leave selection and drain.
 * 0 if applied, -1 if refused.
 */
int	control_reload(struct control *);

/*
 * A module that follows a reload (discovery, stats, admin) installs a
 * hook; lb/main.c does the wiring. At most 8, called in installation order.
 *  - prepare (may be NULL): in the prepare stage, before anything live
 *    changes: check the new config and make what it needs (read files,
 *    open sockets). 0, or -1 with FILE:LINE or "module: why" in err: the
 *    reload is refused and the hooks prepared before get abort.
 *  - commit: once the table and the listeners were updated, before the
 *    old config is freed: take the new config (and what prepare made).
 *    A module without prepare may still return -1 to keep its previous
 *    settings (it logs why).
 *  - abort (may be NULL): drop what prepare made.
 */
struct reload_hook {
	int	(*prepare)(const struct conf *, char err[CONF_ERR_MAX]);
	int	(*commit)(const struct conf *);
	void	(*abort)(void);
};

void	control_add_reload_hook(const struct reload_hook *);

/*
 * What a configuration cannot say alone: a server line that is one of its
 * own binds (it would loop) is refused as FILE:LINE in err. Start, -t and
 * reload call it. 0, or -1 with err filled.
 */
int	control_check_conf(const struct conf *, char err[CONF_ERR_MAX]);

/*
 * Modules with listening sockets of their own (stats, admin) install a
 * hook that closes them when shoal starts to stop, so that its successor
 * can bind them while this process drains. At most 8.
 */
void	control_add_stop_hook(void (*)(void));

/* Stop accepting, release every port, let sessions finish for grace, then
 * leave the loop (as SIGTERM; a second call cuts the grace short). */
void	control_stop(struct control *, const char *why);

/* Build the server table: one backend per [backend], static servers. */
int	control_build_table(struct control *);

/* Bind every listener in every worker and start the worker threads. */
int	control_start_workers(struct control *);

/*
 * Signals an operator may send by mistake must not kill shoal: at the
 * very start SIGPIPE, SIGTTIN, SIGTTOU, SIGXFSZ and the stray signals
 * (SIGALRM, SIGUSR1, SIGUSR2, SIGVTALRM, SIGIO) are ignored; once the
 * loop runs the stray ones are also logged (rate-limited).
 */
void	control_ignore_signals(void);

/* Signals, timers, READY=1. Then ev_run(c->loop). */
void	control_ready(struct control *);

/* Tear everything down after the loop returned. */
void	control_fini(struct control *);

/* Find a backend by name, or NULL. */
struct backend *control_backend(struct control *, const char *name);

#endif /* SHOAL_CONTROL_H */
