/*
 * worker.c - worker threads: listeners, accept, limits, commands.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clientid.h"
#include "listen.h"
#include "log.h"
#include "net.h"
#include "worker.h"

#define ACCEPT_BATCH	64	/* accepts per listener wake-up */
#define LISTEN_BACKLOG	4096
#define RESUME_POLL	0.020	/* seconds between checks while paused */
#define EMFILE_PAUSE	0.100	/* seconds accept sleeps after EMFILE */

struct proxy_limits proxy_limits;
struct proxy_tuning proxy_tuning;

static struct ratelimit emfile_rl;

struct frontend *
frontend_new(const struct conf_frontend *cf, struct backend *be,
    size_t src_capacity)
{
	struct frontend		*fe;
	struct client_policy	*p = NULL;

	if ((fe = calloc(1, sizeof(*fe))) == NULL)
		return NULL;
	snprintf(fe->name, sizeof(fe->name), "%s", cf->name);
	if ((fe->binds = calloc(cf->nbinds, sizeof(*fe->binds))) == NULL) {
		free(fe);
		return NULL;
	}
	memcpy(fe->binds, cf->binds, cf->nbinds * sizeof(*fe->binds));
	fe->nbinds = cf->nbinds;
	if (client_policy_wanted(cf) &&
	    (p = client_policy_new(cf, src_capacity)) == NULL) {
		free(fe->binds);
		free(fe);
		return NULL;
	}
	atomic_init(&fe->policy, p);
	atomic_init(&fe->routes, NULL);		/* the control loop fills */
	atomic_init(&fe->tls, NULL);		/* the control loop fills */
	atomic_init(&fe->backend, be);
	atomic_init(&fe->timeout_client_ms, cf->timeout_client_ms);
	atomic_init(&fe->maxconn, cf->maxconn);
	return fe;
}

void
frontend_free(struct frontend *fe)
{
	if (fe == NULL)
		return;
	client_policy_free(atomic_load(&fe->policy));
	sni_routes_free(atomic_load(&fe->routes));
	tls_fe_free(atomic_load(&fe->tls));
	free(fe->binds);
	free(fe);
}

/*
 * Reserve a session slot against the process and frontend caps. A client
 * over the limit is not accepted: it waits in the listen backlog.
 */
static bool
reserve_slot(struct frontend *fe)
{
	int gmax = atomic_load_explicit(&proxy_limits.maxconn,
	    memory_order_relaxed);
	int fmax = atomic_load_explicit(&fe->maxconn, memory_order_relaxed);

	if (atomic_fetch_add_explicit(&proxy_limits.cur, 1,
	    memory_order_relaxed) >= (uint32_t)gmax) {
		atomic_fetch_sub_explicit(&proxy_limits.cur, 1,
		    memory_order_relaxed);
		return false;
	}
	if (fmax > 0 && atomic_fetch_add_explicit(&fe->cur, 1,
	    memory_order_relaxed) >= (uint32_t)fmax) {
		atomic_fetch_sub_explicit(&fe->cur, 1, memory_order_relaxed);
		atomic_fetch_sub_explicit(&proxy_limits.cur, 1,
		    memory_order_relaxed);
		return false;
	}
	if (fmax <= 0)
		atomic_fetch_add_explicit(&fe->cur, 1, memory_order_relaxed);
	return true;
}

void
proxy_release_slot(struct frontend *fe)
{
	atomic_fetch_sub_explicit(&fe->cur, 1, memory_order_relaxed);
	atomic_fetch_sub_explicit(&proxy_limits.cur, 1, memory_order_relaxed);
}

static bool
slot_available(struct frontend *fe)
{
	int gmax = atomic_load_explicit(&proxy_limits.maxconn,
	    memory_order_relaxed);
	int fmax = atomic_load_explicit(&fe->maxconn, memory_order_relaxed);

	if (atomic_load_explicit(&proxy_limits.cur, memory_order_relaxed) >=
	    (uint32_t)gmax)
		return false;
	if (fmax > 0 && atomic_load_explicit(&fe->cur,
	    memory_order_relaxed) >= (uint32_t)fmax)
		return false;
	return true;
}

static void
listener_pause(struct worker *w, struct listener *l)
{
	if (l->paused || l->fd == -1)
		return;
	l->paused = true;
	ev_io_stop(w->loop, &l->io);
	if (!ev_is_active(&w->resume)) {
		ev_timer_set(&w->resume, RESUME_POLL, RESUME_POLL);
		ev_timer_start(w->loop, &w->resume);
	}
}

/* Resume listeners whose limits allow it; stop polling when none waits. */
static void
listeners_resume(struct worker *w)
{
	bool waiting = false;

	if (ev_now(w->loop) < w->emfile_until)
		return;
	for (size_t i = 0; i < w->nlisteners; i++) {
		struct listener *l = w->listeners[i];

		if (!l->paused || l->fd == -1)
			continue;
		if (slot_available(l->fe)) {
			l->paused = false;
			ev_io_start(w->loop, &l->io);
		} else
			waiting = true;
	}
	if (!waiting)
		ev_timer_stop(w->loop, &w->resume);
}

static void
resume_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	(void)loop;
	(void)revents;
	listeners_resume(t->data);
}

/* A session gave its slot back: release it; resume paused listeners if
 * that allows. */
static void
slot_freed(struct session_home *h, struct frontend *fe)
{
	struct worker *w = (struct worker *)(void *)((char *)h -
	    offsetof(struct worker, home));

	proxy_release_slot(fe);
	if (ev_is_active(&w->resume))
		listeners_resume(w);
}

static void
accept_cb(struct ev_loop *loop, ev_io *io, int revents)
{
	struct listener		*l = io->data;
	struct worker		*w = l->w;
	struct sockaddr_storage	 ss;
	socklen_t		 len;
	int			 fd;

	(void)revents;
	for (int i = 0; i < ACCEPT_BATCH && l->fd != -1; i++) {
		if (!reserve_slot(l->fe)) {
			listener_pause(w, l);
			return;
		}
		len = sizeof(ss);
		fd = accept4(l->fd, (struct sockaddr *)&ss, &len,
		    SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd == -1) {
			proxy_release_slot(l->fe);
			if (net_local_error(errno)) {
				/* Stop accepting and retry from a timer:
				 * level-triggered accept would spin. */
				if (log_ratelimit(&emfile_rl, 1))
					log_warn("frontend %s: accept paused "
					    "for %dms", l->fe->name,
					    (int)(EMFILE_PAUSE * 1000));
				w->emfile_until = ev_now(loop) + EMFILE_PAUSE;
				for (size_t k = 0; k < w->nlisteners; k++)
					listener_pause(w, w->listeners[k]);
				return;
			}
			switch (errno) {
			case EINTR:
			case ECONNABORTED:
			case EPROTO:
				continue;
			case EAGAIN:
#if EAGAIN != EWOULDBLOCK
			case EWOULDBLOCK:
#endif
				return;
			default:
				log_warn("frontend %s: accept", l->fe->name);
				return;
			}
		}
		atomic_fetch_add_explicit(&l->fe->total, 1,
		    memory_order_relaxed);
		atomic_fetch_add_explicit(&proxy_limits.total, 1,
		    memory_order_relaxed);
		session_start(&w->home, l->fe, fd, (struct sockaddr *)&ss, len);
	}
}

static void
listeners_close(struct worker *w)
{
	for (size_t i = 0; i < w->nlisteners; i++) {
		struct listener *l = w->listeners[i];

		ev_io_stop(w->loop, &l->io);
		net_close(l->fd);
		l->fd = -1;
		l->paused = false;
	}
	ev_timer_stop(w->loop, &w->resume);
}

/* Make fd (bound and listening) a listener of fe; owns fd. 0 or -1. */
static int
listener_add(struct worker *w, struct frontend *fe,
    const struct conf_addr *addr, int fd)
{
	struct listener *l;

	if (w->nlisteners == w->listeners_cap) {
		size_t		  cap = w->listeners_cap ? w->listeners_cap * 2 : 8;
		struct listener	**n = reallocarray(w->listeners, cap,
				    sizeof(*n));

		if (n == NULL)
			return -1;
		w->listeners = n;
		w->listeners_cap = cap;
	}
	if ((l = calloc(1, sizeof(*l))) == NULL)
		return -1;
	l->w = w;
	l->fe = fe;
	l->addr = *addr;
	l->fd = fd;
	ev_io_init(&l->io, accept_cb, fd, EV_READ);
	l->io.data = l;
	ev_io_start(w->loop, &l->io);
	w->listeners[w->nlisteners++] = l;
	return 0;
}

static struct listener *
listener_find(struct worker *w, const struct conf_addr *addr, size_t *idx)
{
	for (size_t i = 0; i < w->nlisteners; i++) {
		if (net_addr_equal((struct sockaddr *)&w->listeners[i]->addr.ss,
		    (const struct sockaddr *)&addr->ss)) {
			*idx = i;
			return w->listeners[i];
		}
	}
	return NULL;
}

static void
listener_del(struct worker *w, const struct conf_addr *addr)
{
	struct listener	*l;
	size_t		 i;

	/* Inherited sockets may give a worker several per address. */
	while ((l = listener_find(w, addr, &i)) != NULL) {
		ev_io_stop(w->loop, &l->io);
		net_close(l->fd);
		w->listeners[i] = w->listeners[--w->nlisteners];
		free(l);
	}
}

int
workers_kill_server(struct worker **ws, size_t n, struct server *srv)
{
	for (size_t i = 0; i < n; i++) {
		struct wmsg *m;

		if ((m = calloc(1, sizeof(*m))) == NULL)
			return -1;
		m->type = WMSG_KILL_SERVER;
		m->fd = -1;
		m->srv = srv;
		server_ref(srv);
		pthread_mutex_lock(&ws[i]->mbox_lock);
		*ws[i]->mbox_tail = m;
		ws[i]->mbox_tail = &m->next;
		pthread_mutex_unlock(&ws[i]->mbox_lock);
		worker_command(ws[i], WCMD_MBOX);
	}
	return 0;
}

/* Apply the control loop's messages, in order. */
static void
mbox_run(struct worker *w)
{
	struct wmsg	*m, *next;
	struct listener	*l;
	size_t		 i;

	pthread_mutex_lock(&w->mbox_lock);
	m = w->mbox;
	w->mbox = NULL;
	w->mbox_tail = &w->mbox;
	pthread_mutex_unlock(&w->mbox_lock);
	for (; m != NULL; m = next) {
		next = m->next;
		switch (m->type) {
		case WMSG_ADD_LISTENER:
			if (listener_add(w, m->fe, &m->addr, m->fd) == -1) {
				log_warn("worker %d: cannot add a listener of "
				    "frontend %s", w->id, m->fe->name);
				net_close(m->fd);
			}
			break;
		case WMSG_DEL_LISTENER:
			listener_del(w, &m->addr);
			break;
		case WMSG_SET_FRONTEND:
			for (i = 0; i < w->nlisteners; i++) {
				l = w->listeners[i];
				if (net_addr_equal((struct sockaddr *)
				    &l->addr.ss,
				    (struct sockaddr *)&m->addr.ss))
					l->fe = m->fe;
			}
			break;
		case WMSG_KILL_SERVER: {
			struct session *se, *sn;

			for (se = TAILQ_FIRST(&w->home.sessions); se != NULL;
			    se = sn) {
				sn = TAILQ_NEXT(se, entry);
				if (se->server == m->srv)
					session_close(se, "KD", true);
			}
			server_unref(m->srv);
			break;
		}
		}
		free(m);
	}
}

int
worker_post(struct worker *w, enum wmsg_type type, struct frontend *fe,
    const struct conf_addr *addr, int fd)
{
	struct wmsg *m;

	if ((m = calloc(1, sizeof(*m))) == NULL)
		return -1;
	m->type = type;
	m->fe = fe;
	if (addr != NULL)
		m->addr = *addr;
	m->fd = fd;
	pthread_mutex_lock(&w->mbox_lock);
	*w->mbox_tail = m;
	w->mbox_tail = &m->next;
	pthread_mutex_unlock(&w->mbox_lock);
	worker_command(w, WCMD_MBOX);
	return 0;
}

static void
sessions_kill(struct worker *w)
{
	struct session *s;

	while ((s = TAILQ_FIRST(&w->home.sessions)) != NULL)
		session_close(s, "KD", false);
}

/*
 * [global] io_collect: under load, wait this long before polling so one
 * wake-up collects more events (libev skips the wait when the loop was
 * idle that long anyway): less CPU per request. At start and on WCMD_TUNE.
 */
static void
tune(struct worker *w)
{
	ev_set_io_collect_interval(w->loop, atomic_load_explicit(
	    &proxy_tuning.io_collect_us, memory_order_relaxed) / 1e6);
}

static void
wake_cb(struct ev_loop *loop, ev_async *a, int revents)
{
	struct worker	*w = a->data;
	unsigned	 cmd;

	(void)revents;
	cmd = atomic_exchange(&w->cmd, 0);
	if (cmd & WCMD_MBOX)
		mbox_run(w);
	if (cmd & WCMD_TUNE)
		tune(w);
	if (cmd & WCMD_CLOSE_LISTEN)
		listeners_close(w);
	if (cmd & WCMD_KILL_ALL)
		sessions_kill(w);
	if (cmd & WCMD_EXIT) {
		listeners_close(w);
		sessions_kill(w);
		ev_break(loop, EVBREAK_ALL);
	}
}

static void
quiescent_cb(struct ev_loop *loop, ev_check *c, int revents)
{
	struct worker *w = c->data;

	(void)loop;
	(void)revents;
	atomic_store(&w->qsbr, qsbr_epoch());
}

static void
reap_cb(struct ev_loop *loop, ev_prepare *p, int revents)
{
	(void)loop;
	(void)revents;
	session_reap(&((struct worker *)p->data)->home);
}


struct worker *
worker_new(int id, int nworkers, struct frontend **fes, size_t nfes)
{
	struct worker	*w;
	struct timespec	 ts;

	if ((w = calloc(1, sizeof(*w))) == NULL)
		return NULL;
	w->id = id;
	TAILQ_INIT(&w->home.sessions);
	w->home.bufs = &w->bufs;
	w->home.rng = &w->rng;
	w->home.slot_freed = slot_freed;
	buf_pool_init(&w->bufs, 256);
	pthread_mutex_init(&w->mbox_lock, NULL);
	w->mbox_tail = &w->mbox;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	w->rng = ((uint64_t)ts.tv_nsec << 16) ^ (uint64_t)getpid() ^
	    ((uint64_t)(id + 1) * 0x9e3779b97f4a7c15ULL);
	if (w->rng == 0)
		w->rng = 1;
	if ((w->loop = ev_loop_new(EVFLAG_AUTO | EVFLAG_NOSIGMASK)) == NULL) {
		worker_free(w);
		return NULL;
	}
	w->home.loop = w->loop;
	tune(w);
	for (size_t i = 0; i < nfes; i++) {
		for (size_t j = 0; j < fes[i]->nbinds; j++) {
			struct conf_addr *a = &fes[i]->binds[j];
			char		 abuf[NET_ADDRSTRLEN];
			int		 fds[LISTEN_PER_WORKER_MAX], n, k;

			n = listen_obtain(a, fes[i]->name, id, nworkers,
			    LISTEN_BACKLOG, fds, LISTEN_PER_WORKER_MAX);
			for (k = 0; k < n; k++)
				if (listener_add(w, fes[i], a, fds[k]) == -1)
					break;
			if (n == -1 || k < n) {
				log_error("frontend %s: cannot listen on %s",
				    fes[i]->name, net_addr_str(
				    (struct sockaddr *)&a->ss, abuf,
				    sizeof(abuf)));
				while (n > 0 && k < n)
					net_close(fds[k++]);
				worker_free(w);
				return NULL;
			}
		}
	}
	ev_async_init(&w->wake, wake_cb);
	w->wake.data = w;
	ev_async_start(w->loop, &w->wake);
	ev_check_init(&w->quiescent, quiescent_cb);
	w->quiescent.data = w;
	ev_check_start(w->loop, &w->quiescent);
	ev_prepare_init(&w->reap, reap_cb);
	w->reap.data = w;
	ev_prepare_start(w->loop, &w->reap);
	ev_init(&w->resume, resume_cb);
	w->resume.data = w;
	qsbr_register(&w->qsbr);
	return w;
}

void
worker_free(struct worker *w)
{
	struct wmsg *m;

	if (w == NULL)
		return;
	qsbr_unregister(&w->qsbr);
	if (w->loop != NULL) {
		listeners_close(w);
		sessions_kill(w);
		session_reap(&w->home);
		ev_loop_destroy(w->loop);
	}
	for (size_t i = 0; i < w->nlisteners; i++) {
		net_close(w->listeners[i]->fd);
		free(w->listeners[i]);
	}
	while ((m = w->mbox) != NULL) {
		w->mbox = m->next;
		if (m->type == WMSG_ADD_LISTENER)
			net_close(m->fd);
		if (m->type == WMSG_KILL_SERVER)
			server_unref(m->srv);
		free(m);
	}
	pthread_mutex_destroy(&w->mbox_lock);
	buf_pool_fini(&w->bufs);
	free(w->listeners);
	free(w);
}

static void *
worker_main(void *arg)
{
	struct worker *w = arg;

	ev_run(w->loop, 0);
	return NULL;
}

int
worker_start(struct worker *w)
{
	sigset_t	 all, old;
	int		 rc;

	/* Workers take no signals: the control loop handles them all. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	rc = pthread_create(&w->thread, NULL, worker_main, w);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0) {
		errno = rc;
		return -1;
	}
	w->running = true;
	return 0;
}

void
worker_command(struct worker *w, unsigned cmd)
{
	atomic_fetch_or(&w->cmd, cmd);
	ev_async_send(w->loop, &w->wake);
}

void
worker_join(struct worker *w)
{
	if (w->running)
		pthread_join(w->thread, NULL);
	w->running = false;
}
