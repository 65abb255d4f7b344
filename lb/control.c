/*
 * control.c - the control loop: server table, workers, signals, graceful
 * stop and systemd notifications.
 */
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "control.h"
#include "log.h"
#include "notify.h"

#define RECLAIM_INTERVAL	0.1	/* seconds between QSBR reclaims */
#define STOP_POLL		0.05	/* seconds between stop checks */

static struct control *the_control;	/* for the QSBR waker */

static void
wake_workers(void)
{
	struct control *c = the_control;

	if (c == NULL)
		return;
	for (size_t i = 0; i < c->nworkers; i++)
		worker_command(c->workers[i], WCMD_WAKE);
}

int
control_init(struct control *c, struct conf *conf)
{
	memset(c, 0, sizeof(*c));
	c->loop = ev_default_loop(EVFLAG_AUTO);
	if (c->loop == NULL) {
		errno = ENOMEM;
		return -1;
	}
	c->conf = conf;
	TAILQ_INIT(&c->backends);
	c->started = ev_time();
	the_control = c;
	qsbr_set_waker(wake_workers);
	atomic_store(&proxy_limits.maxconn, conf->global.maxconn);
	return 0;
}

struct backend *
control_backend(struct control *c, const char *name)
{
	struct backend *be;

	TAILQ_FOREACH(be, &c->backends, entry)
		if (strcmp(be->name, name) == 0)
			return be;
	return NULL;
}

int
control_build_table(struct control *c)
{
	struct conf *conf = c->conf;

	for (size_t i = 0; i < conf->nbackends; i++) {
		struct backend *be = backend_new(&conf->backends[i]);

		if (be == NULL) {
			log_error("backend %s", conf->backends[i].name);
			return -1;
		}
		TAILQ_INSERT_TAIL(&c->backends, be, entry);
	}
	c->frontends = calloc(conf->nfrontends, sizeof(*c->frontends));
	if (c->frontends == NULL)
		return -1;
	for (size_t i = 0; i < conf->nfrontends; i++) {
		struct conf_frontend *cf = &conf->frontends[i];

		c->frontends[i] = frontend_new(cf,
		    control_backend(c, cf->backend_name));
		if (c->frontends[i] == NULL)
			return -1;
		c->nfrontends++;
	}
	return 0;
}

static int
cpu_count(void)
{
	cpu_set_t	set;
	long		n;

	if (sched_getaffinity(0, sizeof(set), &set) == 0 &&
	    CPU_COUNT(&set) > 0)
		return CPU_COUNT(&set);
	n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? (int)n : 1;
}

int
control_start_workers(struct control *c)
{
	int n = c->conf->global.threads;

	if (n <= 0)
		n = cpu_count();
	if ((c->workers = calloc((size_t)n, sizeof(*c->workers))) == NULL)
		return -1;
	/* Bind everything first: a bind error stops startup cleanly. */
	for (int i = 0; i < n; i++) {
		c->workers[i] = worker_new(i, c->frontends, c->nfrontends);
		if (c->workers[i] == NULL)
			return -1;
		c->nworkers++;
	}
	for (size_t i = 0; i < c->nworkers; i++) {
		if (worker_start(c->workers[i]) == -1) {
			log_error("cannot start worker %zu", i);
			return -1;
		}
	}
	return 0;
}

static void
status_update(struct control *c)
{
	notify_send("STATUS=%s: %u active sessions, %llu total, %zu workers",
	    c->stopping ? "stopping" : "running",
	    atomic_load(&proxy_limits.cur),
	    (unsigned long long)atomic_load(&proxy_limits.total),
	    c->nworkers);
}

static void
reclaim_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	(void)loop;
	(void)t;
	(void)revents;
	qsbr_reclaim();
}

static void
watchdog_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	(void)loop;
	(void)revents;
	notify_send("WATCHDOG=1");
	status_update(t->data);
}

static void
stop_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct control	*c = t->data;
	uint32_t	 active = atomic_load(&proxy_limits.cur);

	(void)revents;
	if (active > 0 && ev_now(loop) < c->stop_deadline)
		return;
	if (active > 0)
		log_warnx("grace period over: closing %u sessions", active);
	else
		log_info("all sessions finished");
	ev_timer_stop(loop, t);
	for (size_t i = 0; i < c->nworkers; i++)
		worker_command(c->workers[i], WCMD_EXIT);
	ev_break(loop, EVBREAK_ALL);
}

static void
stop_begin(struct control *c, const char *why)
{
	if (c->stopping) {
		/* A second signal: do not wait for the grace period. */
		log_warnx("%s again: closing every session now", why);
		c->stop_deadline = ev_now(c->loop);
		return;
	}
	c->stopping = true;
	notify_send("STOPPING=1");
	log_info("%s: stopped accepting, waiting up to %ums for %u sessions",
	    why, c->conf->global.grace_ms, atomic_load(&proxy_limits.cur));
	for (size_t i = 0; i < c->nworkers; i++)
		worker_command(c->workers[i], WCMD_CLOSE_LISTEN);
	c->stop_deadline = ev_now(c->loop) + c->conf->global.grace_ms / 1000.0;
	ev_timer_init(&c->stop, stop_cb, STOP_POLL, STOP_POLL);
	c->stop.data = c;
	ev_timer_start(c->loop, &c->stop);
}

static void
signal_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
	struct control *c = w->data;

	(void)loop;
	(void)revents;
	switch (w->signum) {
	case SIGTERM:
		stop_begin(c, "SIGTERM");
		break;
	case SIGINT:
		stop_begin(c, "SIGINT");
		break;
	case SIGHUP:
		log_warnx("SIGHUP: configuration reload is not available in "
		    "this version; still running the loaded configuration");
		break;
	}
}

void
control_ready(struct control *c)
{
	uint64_t wd;

	ev_signal_init(&c->sig_term, signal_cb, SIGTERM);
	ev_signal_init(&c->sig_int, signal_cb, SIGINT);
	ev_signal_init(&c->sig_hup, signal_cb, SIGHUP);
	c->sig_term.data = c->sig_int.data = c->sig_hup.data = c;
	ev_signal_start(c->loop, &c->sig_term);
	ev_signal_start(c->loop, &c->sig_int);
	ev_signal_start(c->loop, &c->sig_hup);
	ev_timer_init(&c->reclaim, reclaim_cb, RECLAIM_INTERVAL,
	    RECLAIM_INTERVAL);
	ev_timer_start(c->loop, &c->reclaim);
	if ((wd = notify_watchdog_usec()) > 0) {
		double every = wd / 2e6;

		ev_timer_init(&c->watchdog, watchdog_cb, every, every);
		c->watchdog.data = c;
		ev_timer_start(c->loop, &c->watchdog);
	}
	notify_send("READY=1\nMAINPID=%ld", (long)getpid());
	status_update(c);
	for (size_t i = 0; i < c->nfrontends; i++) {
		struct frontend *fe = c->frontends[i];
		char		 abuf[NET_ADDRSTRLEN];

		for (size_t j = 0; j < fe->nbinds; j++)
			log_info("frontend %s listening on %s -> backend %s",
			    fe->name, net_addr_str(
			    (struct sockaddr *)&fe->binds[j].ss, abuf,
			    sizeof(abuf)), atomic_load(&fe->backend)->name);
	}
	log_info("ready: %zu workers, pid %ld", c->nworkers, (long)getpid());
}

void
control_fini(struct control *c)
{
	struct backend *be;

	for (size_t i = 0; i < c->nworkers; i++) {
		worker_command(c->workers[i], WCMD_EXIT);
		worker_join(c->workers[i]);
	}
	for (size_t i = 0; i < c->nworkers; i++)
		worker_free(c->workers[i]);
	free(c->workers);
	c->workers = NULL;
	c->nworkers = 0;
	qsbr_drain();
	for (size_t i = 0; i < c->nfrontends; i++)
		frontend_free(c->frontends[i]);
	free(c->frontends);
	while ((be = TAILQ_FIRST(&c->backends)) != NULL) {
		TAILQ_REMOVE(&c->backends, be, entry);
		backend_free(be);
	}
	conf_free(c->conf);
	ev_loop_destroy(c->loop);
	the_control = NULL;
	qsbr_set_waker(NULL);
}
