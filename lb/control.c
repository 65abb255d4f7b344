/*
 * control.c - the control loop: server table, workers, signals, graceful
 * stop and systemd notifications.
 */
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clientid.h"
#include "control.h"
#include "events.h"
#include "listen.h"
#include "log.h"
#include "notify.h"
#include "relay.h"
#include "srclimit.h"
#include "tls.h"

#define RECLAIM_INTERVAL	0.1	/* seconds between QSBR reclaims */
#define STOP_POLL		0.05	/* seconds between stop checks */

static struct control *the_control;	/* for the QSBR waker */
#define RELOAD_HOOKS_MAX	8
static const struct reload_hook *reload_hooks[RELOAD_HOOKS_MAX];
static size_t	nreload_hooks;
static void	(*stop_hooks[RELOAD_HOOKS_MAX])(void);
static size_t	nstop_hooks;

static void
wake_workers(void)
{
	struct control *c = the_control;

	if (c == NULL)
		return;
	for (size_t i = 0; i < c->nworkers; i++)
		worker_command(c->workers[i], WCMD_WAKE);
}

/* [global] settings the workers read: at start (before the workers
 * exist) and on every reload. */
static void
globals_apply(struct control *c, const struct conf_global *g)
{
	atomic_store(&proxy_limits.maxconn, g->maxconn);
	atomic_store(&proxy_tuning.io_collect_us, g->io_collect_us);
	relay_set_splice(g->splice);
	tls_set_ktls(g->ktls);
	tls_set_rotate(g->tls_ticket_rotate_ms);
	for (size_t i = 0; i < c->nworkers; i++)
		worker_command(c->workers[i], WCMD_TUNE);
}

int
control_init(struct control *c, struct conf *conf, const char *path)
{
	memset(c, 0, sizeof(*c));
	c->conf_path = path;
	TAILQ_INIT(&c->old_backends);
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
	globals_apply(c, &conf->global);
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
control_check_conf(const struct conf *conf, char err[CONF_ERR_MAX])
{
	for (size_t i = 0; i < conf->nbackends; i++) {
		const struct conf_backend *cb = &conf->backends[i];

		for (size_t j = 0; j < cb->nservers; j++) {
			const struct conf_server	*cs = &cb->servers[j];
			const struct conf_addr		*b;
			char				 abuf[NET_ADDRSTRLEN];

			b = server_addr_loops(conf, (const struct sockaddr *)
			    &cs->addr.ss);
			if (b == NULL)
				continue;
			snprintf(err, CONF_ERR_MAX, "%s:%d: server %s/%s %s is "
			    "shoal's own listen address (bind at line %d): "
			    "every session would loop", conf->file, cs->line,
			    cb->name, cs->name, net_addr_str((const struct
			    sockaddr *)&cs->addr.ss, abuf, sizeof(abuf)),
			    b->line);
			return -1;
		}
	}
	return 0;
}

/* Point routes at the current table's backends and publish them on fe;
 * the set they replace is retired. */
static void
routes_publish(struct control *c, struct frontend *fe, struct sni_routes *r)
{
	for (size_t i = 0; r != NULL && i < r->n; i++)
		r->be[i] = control_backend(c, r->backend_name[i]);
	sni_routes_retire(atomic_exchange(&fe->routes, r));
}

int
control_build_table(struct control *c)
{
	struct conf *conf = c->conf;

	char		 err[CONF_ERR_MAX];
	struct tls_fe	*ft;
	struct tls_be	*bt;

	for (size_t i = 0; i < conf->nbackends; i++) {
		struct backend *be = backend_new(&conf->backends[i]);

		if (be == NULL) {
			log_error("backend %s", conf->backends[i].name);
			return -1;
		}
		TAILQ_INSERT_TAIL(&c->backends, be, entry);
		if (tls_be_new(conf, &conf->backends[i], &bt, err) == -1) {
			log_errorx("%s", err);
			return -1;
		}
		atomic_store(&be->tls, bt);
	}
	c->frontends = calloc(conf->nfrontends, sizeof(*c->frontends));
	if (c->frontends == NULL)
		return -1;
	for (size_t i = 0; i < conf->nfrontends; i++) {
		struct conf_frontend *cf = &conf->frontends[i];

		struct sni_routes *r;

		c->frontends[i] = frontend_new(cf,
		    control_backend(c, cf->backend_name),
		    srclimit_capacity((size_t)conf->global.maxconn));
		if (c->frontends[i] == NULL)
			return -1;
		c->nfrontends++;
		if ((r = sni_routes_new(cf)) == NULL && errno != 0)
			return -1;
		routes_publish(c, c->frontends[i], r);
		if (tls_fe_new(conf, cf, &ft, err) == -1) {
			log_errorx("%s", err);
			return -1;
		}
		atomic_store(&c->frontends[i]->tls, ft);
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
		c->workers[i] = worker_new(i, n, c->frontends, c->nfrontends);
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

/* Slow starts ramp and load reports age: effective weights move. */
static void
weights_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct control *c = t->data;

	(void)loop;
	(void)revents;
	server_weights_tick(&c->backends);
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

void
control_add_stop_hook(void (*fn)(void))
{
	if (nstop_hooks < RELOAD_HOOKS_MAX)
		stop_hooks[nstop_hooks++] = fn;
}

void
control_stop(struct control *c, const char *why)
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
	for (size_t i = 0; i < nstop_hooks; i++)
		stop_hooks[i]();
	c->stop_deadline = ev_now(c->loop) + c->conf->global.grace_ms / 1000.0;
	ev_timer_init(&c->stop, stop_cb, STOP_POLL, STOP_POLL);
	c->stop.data = c;
	ev_timer_start(c->loop, &c->stop);
}

static const int stray_signals[CONTROL_STRAY_SIGNALS] = {
	SIGALRM, SIGUSR1, SIGUSR2, SIGVTALRM, SIGIO,
};

void
control_ignore_signals(void)
{
	static const int quiet[] = { SIGPIPE, SIGTTIN, SIGTTOU, SIGXFSZ };

	for (size_t i = 0; i < sizeof(quiet) / sizeof(quiet[0]); i++)
		signal(quiet[i], SIG_IGN);
	for (size_t i = 0; i < CONTROL_STRAY_SIGNALS; i++)
		signal(stray_signals[i], SIG_IGN);
}

static void
stray_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
	static struct ratelimit rl;

	(void)loop;
	(void)revents;
	if (log_ratelimit(&rl, 1))
		log_warnx("SIG%s received: ignored (SIGTERM stops shoal, "
		    "SIGHUP reloads it)", sigabbrev_np(w->signum) ?
		    sigabbrev_np(w->signum) : "?");
}

static void
signal_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
	struct control *c = w->data;

	(void)loop;
	(void)revents;
	switch (w->signum) {
	case SIGTERM:
		control_stop(c, "SIGTERM");
		break;
	case SIGINT:
		control_stop(c, "SIGINT");
		break;
	case SIGHUP:
		if (!c->stopping)
			(void)control_reload(c);
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
	for (size_t i = 0; i < CONTROL_STRAY_SIGNALS; i++) {
		ev_signal_init(&c->sig_stray[i], stray_cb, stray_signals[i]);
		ev_signal_start(c->loop, &c->sig_stray[i]);
	}
	ev_timer_init(&c->reclaim, reclaim_cb, RECLAIM_INTERVAL,
	    RECLAIM_INTERVAL);
	ev_timer_start(c->loop, &c->reclaim);
	ev_timer_init(&c->weights, weights_cb, SERVER_WEIGHTS_TICK,
	    SERVER_WEIGHTS_TICK);
	c->weights.data = c;
	ev_timer_start(c->loop, &c->weights);
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
	for (size_t i = 0; i < c->nold_frontends; i++)
		frontend_free(c->old_frontends[i]);
	free(c->old_frontends);
	while ((be = TAILQ_FIRST(&c->backends)) != NULL) {
		TAILQ_REMOVE(&c->backends, be, entry);
		backend_free(be);
	}
	while ((be = TAILQ_FIRST(&c->old_backends)) != NULL) {
		TAILQ_REMOVE(&c->old_backends, be, entry);
		backend_free(be);
	}
	conf_free(c->conf);
	ev_loop_destroy(c->loop);
	the_control = NULL;
	qsbr_set_waker(NULL);
}

/* ---- reload ---------------------------------------------------------- */

void
control_add_reload_hook(const struct reload_hook *h)
{
	if (nreload_hooks < RELOAD_HOOKS_MAX)
		reload_hooks[nreload_hooks++] = h;
}

/* New sockets for one bind address, one per worker. */
struct prebind {
	struct conf_addr	 addr;
	int			*fds;		/* [nworkers], -1 once handed over */
};

static int
conf_server_cmp(const void *a, const void *b)
{
	const struct conf_server *const *x = a, *const *y = b;

	return strcmp((*x)->name, (*y)->name);
}

/* cb's servers sorted by name, for conf_server_find(): a reload of a
 * backend with 100 000 servers stays O(n log n). NULL if out of memory. */
static const struct conf_server **
conf_servers_by_name(const struct conf_backend *cb)
{
	const struct conf_server **v;

	if ((v = calloc(cb->nservers ? cb->nservers : 1, sizeof(*v))) == NULL)
		return NULL;
	for (size_t i = 0; i < cb->nservers; i++)
		v[i] = &cb->servers[i];
	qsort(v, cb->nservers, sizeof(*v), conf_server_cmp);
	return v;
}

static const struct conf_server *
conf_server_find(const struct conf_backend *cb,
    const struct conf_server **byname, const char *name)
{
	struct conf_server		 key;
	const struct conf_server	*kp = &key, **hit;

	if (byname == NULL) {
		for (size_t i = 0; i < cb->nservers; i++)
			if (strcmp(cb->servers[i].name, name) == 0)
				return &cb->servers[i];
		return NULL;
	}
	snprintf(key.name, sizeof(key.name), "%s", name);
	hit = bsearch(&kp, byname, cb->nservers, sizeof(*byname),
	    conf_server_cmp);
	return hit != NULL ? *hit : NULL;
}

/*
 * Bring an existing backend to its new configuration, in place: static
 * servers that are gone or moved leave, the backend takes its settings
 * (health follows through the table's observer), kept ones take their
 * weight and limits, new ones join. Publishes once at the end.
 */
static void
backend_apply(struct backend *be, const struct conf_backend *nb)
{
	struct server	*s, *next;
	const struct conf_server **byname = conf_servers_by_name(nb);

	table_batch_begin();
	for (s = TAILQ_FIRST(&be->servers); s != NULL; s = next) {
		const struct conf_server *cs;

		next = TAILQ_NEXT(s, entry);
		if (s->source != SRC_STATIC)
			continue;
		cs = conf_server_find(nb, byname, s->name);
		if (cs != NULL && net_addr_equal((struct sockaddr *)&s->addr,
		    (const struct sockaddr *)&cs->addr.ss))
			continue;
		log_info("server %s/%s: removed by reload (%u sessions "
		    "finish on it)", be->name, s->name, atomic_load(&s->cur));
		server_leave(s);
	}
	backend_set_conf(be, nb);
	for (size_t i = 0; i < nb->nservers; i++) {
		const struct conf_server	*cs = &nb->servers[i];
		struct server_spec		 spec;

		if ((s = server_find(be, cs->name)) != NULL) {
			if (s->source != SRC_STATIC)
				continue;
			server_set_weight(s, cs->weight, "reload");
			server_set_limits(s, cs->maxconn, cs->backup);
			server_set_send_proxy(s, cs->send_proxy);
			continue;
		}
		server_spec_conf(&spec, cs);
		if ((s = server_join(be, &spec, SRC_STATIC)) == NULL) {
			log_warn("server %s/%s: not added", be->name, cs->name);
			continue;
		}
		log_info("server %s/%s: added by reload (%s)", be->name,
		    s->name, s->addrstr);
	}
	free(byname);
	table_batch_end();
}

static struct frontend *
frontend_find(struct control *c, const char *name)
{
	for (size_t i = 0; i < c->nfrontends; i++)
		if (strcmp(c->frontends[i]->name, name) == 0)
			return c->frontends[i];
	return NULL;
}

/* The frontend currently bound to addr, or NULL. */
static struct frontend *
bound_by(struct control *c, const struct conf_addr *a)
{
	for (size_t i = 0; i < c->nfrontends; i++)
		for (size_t j = 0; j < c->frontends[i]->nbinds; j++)
			if (net_addr_equal((struct sockaddr *)
			    &c->frontends[i]->binds[j].ss,
			    (const struct sockaddr *)&a->ss))
				return c->frontends[i];
	return NULL;
}

static bool
conf_binds(const struct conf *conf, const struct conf_addr *a)
{
	for (size_t i = 0; i < conf->nfrontends; i++)
		for (size_t j = 0; j < conf->frontends[i].nbinds; j++)
			if (net_addr_equal((const struct sockaddr *)
			    &conf->frontends[i].binds[j].ss,
			    (const struct sockaddr *)&a->ss))
				return true;
	return false;
}

/* Close fe's listeners on addresses the new config binds nowhere. */
static void
listeners_drop_unbound(struct control *c, const struct conf *nc,
    struct frontend *fe)
{
	for (size_t j = 0; j < fe->nbinds; j++)
		if (!conf_binds(nc, &fe->binds[j]))
			for (size_t w = 0; w < c->nworkers; w++)
				(void)worker_post(c->workers[w],
				    WMSG_DEL_LISTENER, fe, &fe->binds[j], -1);
}

/*
 * A reload in the making. parse, validate and prepare fill it without
 * touching live state (every allocation is made here, so commit cannot
 * fail); commit applies it; reload_free() releases what is left either
 * way.
 */
struct reload {
	struct conf		 *nc;		/* the new config */
	char			  err[CONF_ERR_MAX]; /* why it is refused */
	struct prebind		 *pb;		/* [npb] new bind addresses */
	size_t			  npb;
	size_t			  nbinds;	/* in nc, all frontends */
	struct frontend		**fes;		/* [nc->nfrontends] */
	struct conf_addr	**binds;	/* [nc->nfrontends] kept ones' */
	struct frontend		**owners;	/* [nbinds] current owners */
	struct sni_routes	**routes;	/* [nc->nfrontends] to publish
						   (NULL: none) */
	bool			 *pol_swap;	/* [nc->nfrontends] kept ones
						   whose client policy changes */
	struct client_policy	**pols;		/* [nc->nfrontends] to that
						   (NULL: none) */
	struct tls_fe		**fetls;	/* [nc->nfrontends] to publish */
	struct tls_be		**betls;	/* [nc->nbackends] to publish */
};

static void
reload_free(struct control *c, struct reload *r)
{
	for (size_t i = 0; i < r->npb; i++) {
		for (size_t w = 0; w < c->nworkers && r->pb[i].fds; w++)
			net_close(r->pb[i].fds[w]);
		free(r->pb[i].fds);
	}
	free(r->pb);
	/* Frontends made by prepare and never published. */
	for (size_t i = 0; r->fes != NULL && i < r->nc->nfrontends; i++)
		if (r->fes[i] != NULL && frontend_find(c, r->fes[i]->name) !=
		    r->fes[i])
			frontend_free(r->fes[i]);
	for (size_t i = 0; r->binds != NULL && i < r->nc->nfrontends; i++)
		free(r->binds[i]);
	for (size_t i = 0; r->pols != NULL && i < r->nc->nfrontends; i++)
		client_policy_free(r->pols[i]);	/* never published */
	for (size_t i = 0; r->routes != NULL && i < r->nc->nfrontends; i++)
		sni_routes_free(r->routes[i]);	/* never published */
	for (size_t i = 0; r->fetls != NULL && i < r->nc->nfrontends; i++)
		tls_fe_free(r->fetls[i]);	/* never published */
	for (size_t i = 0; r->betls != NULL && i < r->nc->nbackends; i++)
		tls_be_free(r->betls[i]);	/* never published */
	free(r->fetls);
	free(r->betls);
	free(r->routes);
	free(r->fes);
	free(r->binds);
	free(r->owners);
	free(r->pol_swap);
	free(r->pols);
	conf_free(r->nc);
}

/* The running config of frontend name, or NULL. */
static const struct conf_frontend *
running_frontend(struct control *c, const char *name)
{
	for (size_t i = 0; i < c->conf->nfrontends; i++)
		if (strcmp(c->conf->frontends[i].name, name) == 0)
			return &c->conf->frontends[i];
	return NULL;
}

/* Prepare, kept frontend i: a new client policy if its own changes (the
 * same one keeps its per-source counts). 0, or -1 (ENOMEM). */
static int
policy_prepare(struct control *c, struct reload *r, size_t i)
{
	const struct conf_frontend	*cf = &r->nc->frontends[i];
	const struct conf_frontend	*old = running_frontend(c, cf->name);

	if (old != NULL && client_policy_same(old, cf))
		return 0;
	r->pol_swap[i] = true;
	if (!client_policy_wanted(cf))
		return 0;
	r->pols[i] = client_policy_new(cf,
	    srclimit_capacity((size_t)r->nc->global.maxconn));
	return r->pols[i] == NULL ? -1 : 0;
}

/* Parse: read and validate the file; nothing else is looked at. */
static int
reload_parse(struct control *c, struct reload *r)
{
	r->nc = conf_load_file(c->conf_path, r->err);
	return r->nc == NULL ? -1 : 0;
}

/* Validate what the file alone cannot say: how it meets the running
 * process. */
static int
reload_validate(struct control *c, struct reload *r)
{
	if (control_check_conf(r->nc, r->err) == -1)
		return -1;
	if (r->nc->global.threads != c->conf->global.threads)
		log_warnx("reload: threads changes take effect at the next "
		    "restart");
	return 0;
}

/*
 * Pre-bind: one new socket per worker for every address no frontend
 * listens on yet, before anything changes, so that a bind error refuses
 * the reload. 0, or -1 with r->err (empty: out of memory).
 */
static int
reload_prebind(struct control *c, struct reload *r)
{
	struct conf *nc = r->nc;

	for (size_t i = 0; i < nc->nfrontends; i++)
		r->nbinds += nc->frontends[i].nbinds;
	if ((r->pb = calloc(r->nbinds ? r->nbinds : 1, sizeof(*r->pb))) ==
	    NULL)
		return -1;
	for (size_t i = 0; i < nc->nfrontends; i++) {
		for (size_t j = 0; j < nc->frontends[i].nbinds; j++) {
			struct conf_addr	*a = &nc->frontends[i].binds[j];
			struct prebind		*p;

			if (bound_by(c, a) != NULL)
				continue;
			p = &r->pb[r->npb++];
			p->addr = *a;
			if ((p->fds = malloc(c->nworkers * sizeof(*p->fds))) ==
			    NULL)
				return -1;
			for (size_t w = 0; w < c->nworkers; w++)
				p->fds[w] = -1;
			for (size_t w = 0; w < c->nworkers; w++) {
				if (listen_obtain(a, nc->frontends[i].name,
				    (int)w, (int)c->nworkers, 4096, &p->fds[w],
				    1) == -1) {
					char abuf[NET_ADDRSTRLEN];

					snprintf(r->err, sizeof(r->err),
					    "%s:%d: cannot listen on %s: %s",
					    c->conf_path, a->line, net_addr_str(
					    (struct sockaddr *)&a->ss, abuf,
					    sizeof(abuf)), strerror(errno));
					return -1;
				}
			}
		}
	}
	return 0;
}

/* Prepare, modules: each hook's prepare in order; on a refusal, the ones
 * prepared before drop their work. Last, so that nothing fails after. */
static int
reload_prepare_modules(struct reload *r)
{
	for (size_t i = 0; i < nreload_hooks; i++) {
		if (reload_hooks[i]->prepare == NULL ||
		    reload_hooks[i]->prepare(r->nc, r->err) == 0)
			continue;
		while (i-- > 0)
			if (reload_hooks[i]->abort != NULL)
				reload_hooks[i]->abort();
		return -1;
	}
	return 0;
}

/*
 * Prepare: the listeners, then every object commit needs: new frontends
 * (their backend is set at commit), the kept frontends' bind arrays, the
 * owner of each address before the change, room among the old
 * frontends; last, the modules (key files, sockets). 0, or -1 with r->err
 * (empty: out of memory).
 */
static int
reload_prepare(struct control *c, struct reload *r)
{
	struct conf		 *nc = r->nc;
	struct frontend		**o;
	size_t			  n = nc->nfrontends;

	if (reload_prebind(c, r) == -1)
		return -1;
	r->fes = calloc(n ? n : 1, sizeof(*r->fes));
	r->binds = calloc(n ? n : 1, sizeof(*r->binds));
	r->owners = calloc(r->nbinds ? r->nbinds : 1, sizeof(*r->owners));
	r->pol_swap = calloc(n ? n : 1, sizeof(*r->pol_swap));
	r->pols = calloc(n ? n : 1, sizeof(*r->pols));
	r->routes = calloc(n ? n : 1, sizeof(*r->routes));
	r->fetls = calloc(n ? n : 1, sizeof(*r->fetls));
	r->betls = calloc(nc->nbackends ? nc->nbackends : 1,
	    sizeof(*r->betls));
	if (r->fes == NULL || r->binds == NULL || r->owners == NULL ||
	    r->pol_swap == NULL || r->pols == NULL || r->routes == NULL ||
	    r->fetls == NULL || r->betls == NULL)
		return -1;
	/* Certificates and CA files are read again on every reload: a
	 * renewed file is taken, a bad one refuses the reload. */
	for (size_t i = 0; i < n; i++)
		if (tls_fe_new(nc, &nc->frontends[i], &r->fetls[i], r->err) ==
		    -1)
			return -1;
	for (size_t i = 0; i < nc->nbackends; i++)
		if (tls_be_new(nc, &nc->backends[i], &r->betls[i], r->err) ==
		    -1)
			return -1;
	for (size_t i = 0; i < n; i++)
		if ((r->routes[i] = sni_routes_new(&nc->frontends[i])) == NULL &&
		    errno != 0)
			return -1;
	/* Who listens on each new address now: commit rewrites the binds of
	 * the kept frontends, and moves addresses from these owners. */
	for (size_t i = 0, k = 0; i < n; i++)
		for (size_t j = 0; j < nc->frontends[i].nbinds; j++)
			r->owners[k++] = bound_by(c, &nc->frontends[i].binds[j]);
	for (size_t i = 0; i < n; i++) {
		const struct conf_frontend *cf = &nc->frontends[i];

		if ((r->fes[i] = frontend_find(c, cf->name)) == NULL) {
			if ((r->fes[i] = frontend_new(cf, NULL,
			    srclimit_capacity((size_t)nc->global.maxconn))) ==
			    NULL)
				return -1;
			continue;
		}
		if (policy_prepare(c, r, i) == -1)
			return -1;
		r->binds[i] = calloc(cf->nbinds ? cf->nbinds : 1,
		    sizeof(*r->binds[i]));
		if (r->binds[i] == NULL)
			return -1;
		memcpy(r->binds[i], cf->binds, cf->nbinds * sizeof(**r->binds));
	}
	/* Every current frontend may become an old one. */
	o = reallocarray(c->old_frontends, c->nold_frontends + c->nfrontends +
	    1, sizeof(*o));
	if (o == NULL)
		return -1;
	c->old_frontends = o;
	return reload_prepare_modules(r);
}

/* Commit, backends: update in place, add new ones, retire removed ones.
 * Health follows through the table's observer. */
static void
commit_backends(struct control *c, struct reload *r)
{
	const struct conf	*nc = r->nc;
	struct backend		*be, *next;

	for (size_t i = 0; i < nc->nbackends; i++) {
		const struct conf_backend *cb = &nc->backends[i];

		if ((be = control_backend(c, cb->name)) != NULL)
			backend_apply(be, cb);
		else if ((be = backend_new(cb)) == NULL) {
			log_warn("backend %s: not created", cb->name);
			continue;
		} else {
			TAILQ_INSERT_TAIL(&c->backends, be, entry);
			log_info("backend %s: added by reload", be->name);
		}
		tls_be_retire(atomic_exchange(&be->tls, r->betls[i]));
		r->betls[i] = NULL;		/* published */
	}
	for (be = TAILQ_FIRST(&c->backends); be != NULL; be = next) {
		next = TAILQ_NEXT(be, entry);
		if (conf_backend_find(nc, be->name) != NULL)
			continue;
		backend_retire(be);
		TAILQ_REMOVE(&c->backends, be, entry);
		TAILQ_INSERT_TAIL(&c->old_backends, be, entry);
		log_info("backend %s: removed by reload (its sessions finish)",
		    be->name);
	}
}

/* Commit, frontends: same name keeps its object and counters; every one
 * points at its backend of the new table. */
static void
commit_frontends(struct control *c, struct reload *r)
{
	const struct conf *nc = r->nc;

	for (size_t i = 0; i < nc->nfrontends; i++) {
		const struct conf_frontend	*cf = &nc->frontends[i];
		struct frontend			*fe = r->fes[i];
		struct backend			*fb = control_backend(c,
						    cf->backend_name);

		atomic_store(&fe->backend, fb);
		routes_publish(c, fe, r->routes[i]);
		r->routes[i] = NULL;		/* published */
		tls_fe_retire(atomic_exchange(&fe->tls, r->fetls[i]));
		r->fetls[i] = NULL;		/* published */
		if (r->binds[i] == NULL) {
			log_info("frontend %s: added by reload", cf->name);
			continue;
		}
		/* An address moving to another frontend is handled below. */
		listeners_drop_unbound(c, nc, fe);
		free(fe->binds);
		fe->binds = r->binds[i];
		r->binds[i] = NULL;
		fe->nbinds = cf->nbinds;
		atomic_store(&fe->timeout_client_ms, cf->timeout_client_ms);
		atomic_store(&fe->maxconn, cf->maxconn);
		if (r->pol_swap[i]) {
			client_policy_retire(atomic_exchange(&fe->policy,
			    r->pols[i]));
			r->pols[i] = NULL;	/* published */
		}
	}
}

/* Commit, listeners: kept ones may change frontend; new ones go to the
 * workers; the frontends no longer configured drop theirs and retire. */
static void
commit_listeners(struct control *c, struct reload *r)
{
	const struct conf	 *nc = r->nc;
	struct frontend		**fes = r->fes;

	for (size_t i = 0, k = 0; i < nc->nfrontends; i++) {
		for (size_t j = 0; j < fes[i]->nbinds; j++, k++) {
			struct conf_addr	*a = &fes[i]->binds[j];
			struct frontend		*old = r->owners[k];

			if (old == NULL || old == fes[i])
				continue;
			for (size_t w = 0; w < c->nworkers; w++)
				(void)worker_post(c->workers[w],
				    WMSG_SET_FRONTEND, fes[i], a, -1);
		}
	}
	for (size_t k = 0; k < r->npb; k++) {
		struct prebind	*p = &r->pb[k];
		struct frontend	*owner = NULL;

		for (size_t i = 0; owner == NULL && i < nc->nfrontends; i++)
			for (size_t j = 0; j < fes[i]->nbinds; j++)
				if (net_addr_equal((struct sockaddr *)
				    &fes[i]->binds[j].ss,
				    (struct sockaddr *)&p->addr.ss))
					owner = fes[i];
		for (size_t w = 0; w < c->nworkers; w++)
			if (worker_post(c->workers[w], WMSG_ADD_LISTENER, owner,
			    &p->addr, p->fds[w]) == 0)
				p->fds[w] = -1;
	}
	for (size_t i = 0; i < c->nfrontends; i++) {
		struct frontend *fe = c->frontends[i];
		bool		 kept = false;

		for (size_t k = 0; k < nc->nfrontends; k++)
			if (fes[k] == fe)
				kept = true;
		if (kept)
			continue;
		/* Its addresses may live on in another frontend. */
		listeners_drop_unbound(c, nc, fe);
		c->old_frontends[c->nold_frontends++] = fe;	/* room made */
		log_info("frontend %s: removed by reload", fe->name);
	}
	free(c->frontends);
	c->frontends = fes;
	c->nfrontends = nc->nfrontends;
	r->fes = NULL;		/* published */
}

/* Commit: the only stage that touches live state. Cannot fail. */
static void
reload_commit(struct control *c, struct reload *r)
{
	struct conf *nc = r->nc;

	table_batch_begin();
	commit_backends(c, r);
	table_batch_end();
	commit_frontends(c, r);
	commit_listeners(c, r);
	globals_apply(c, &nc->global);
	log_set_level(nc->global.log_level);
	for (size_t i = 0; i < nreload_hooks; i++)
		(void)reload_hooks[i]->commit(nc);
	r->nc = c->conf;	/* the old config goes with the reload */
	c->conf = nc;
	c->reloads++;
	c->reload_error[0] = '\0';
	log_info("reload done: %zu frontends, %zu backends", c->nfrontends,
	    nc->nbackends);
	events_add(EV_KIND_RELOAD, NULL, NULL, "reload done: %zu frontends, "
	    "%zu backends", c->nfrontends, nc->nbackends);
}

int
control_reload(struct control *c)
{
	struct reload	r;
	int		rc = -1;

	if (c->conf_path == NULL) {
		log_warnx("SIGHUP: running the embedded default configuration, "
		    "nothing to reload");
		return -1;
	}
	notify_send("RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=reloading %s",
	    (unsigned long long)notify_monotonic_usec(), c->conf_path);
	log_info("SIGHUP: reloading %s", c->conf_path);
	memset(&r, 0, sizeof(r));
	if (reload_parse(c, &r) == -1 || reload_validate(c, &r) == -1 ||
	    reload_prepare(c, &r) == -1) {
		if (r.err[0] == '\0')	/* only allocations fail silently */
			snprintf(r.err, sizeof(r.err), "out of memory");
		snprintf(c->reload_error, sizeof(c->reload_error), "%s", r.err);
		log_errorx("reload refused: %s; still running the previous "
		    "configuration", r.err);
		events_add(EV_KIND_RELOAD, NULL, NULL, "reload refused: %s",
		    r.err);
		notify_send("READY=1\nSTATUS=reload refused: %s", r.err);
	} else {
		reload_commit(c, &r);
		notify_send("READY=1");
		status_update(c);
		rc = 0;
	}
	reload_free(c, &r);
	return rc;
}
