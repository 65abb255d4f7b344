/*
 * server.c - the server table, pool snapshots and their reclamation.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ev.h>

#include "balance.h"
#include "events.h"
#include "loadweight.h"
#include "log.h"
#include "server.h"

/* QSBR state: the global epoch, the workers' slots, the retired pools. */
#define QSBR_MAX_SLOTS	1024

static _Atomic uint64_t		 qsbr_global = 1;
static _Atomic uint64_t		*qsbr_slots[QSBR_MAX_SLOTS];
static _Atomic int		 qsbr_nslots;
static pthread_mutex_t		 qsbr_lock = PTHREAD_MUTEX_INITIALIZER;
static struct pool		*retired_head;	/* control loop only */
static struct deferred		*deferred_head;	/* control loop only */
static void			(*qsbr_waker)(void);
static void			(*_Atomic passive_hook)(void);

/* Any other object retired by the control loop: qsbr_defer(). */
struct deferred {
	uint64_t		 retired;
	void			(*free_fn)(void *);
	bool			(*busy)(void *);
	void			*arg;
	struct deferred		*next;
};

/* The table's observer and its publish batch (control loop only). */
static const struct table_observer	*observer;
static int				 batch_depth;
static struct backend			**dirty;	/* to publish at batch end */
static size_t				 ndirty, dirty_cap;

static void	dirty_forget(struct backend *);
static struct server *join_quiet(struct backend *, const struct server_spec *,
		    enum server_source);

struct backend *
backend_new(const struct conf_backend *cb)
{
	struct backend *be;

	if ((be = calloc(1, sizeof(*be))) == NULL)
		return NULL;
	snprintf(be->name, sizeof(be->name), "%s", cb->name);
	be->conf = *cb;
	be->conf.servers = NULL;	/* not ours: the conf is freed */
	be->conf.nservers = 0;
	atomic_init(&be->fall, cb->fall > 0 ? cb->fall : 3);
	TAILQ_INIT(&be->servers);
	for (size_t i = 0; i < cb->nservers; i++) {
		struct server_spec spec;

		server_spec_conf(&spec, &cb->servers[i]);
		if (join_quiet(be, &spec, SRC_STATIC) == NULL) {
			backend_retire(be);
			backend_free(be);
			return NULL;
		}
	}
	if (server_publish(be) == -1) {
		backend_retire(be);
		backend_free(be);
		return NULL;
	}
	return be;
}

void
backend_free(struct backend *be)
{
	struct server	*s;
	struct pool	*p;

	if (be == NULL)
		return;
	dirty_forget(be);
	while ((s = TAILQ_FIRST(&be->servers)) != NULL)
		server_remove(s);
	if ((p = atomic_exchange(&be->pool, NULL)) != NULL)
		server_pool_free(p);
	free(be->names);
	tls_be_free(atomic_load(&be->tls));
	free(be);
}

static uint32_t
name_hash(const char *be, const char *name)
{
	uint32_t h = 2166136261u;

	for (const char *c = be; *c; c++)
		h = (h ^ (unsigned char)*c) * 16777619u;
	h = (h ^ '/') * 16777619u;
	for (const char *c = name; *c; c++)
		h = (h ^ (unsigned char)*c) * 16777619u;
	return h;
}

/* The name index keeps server_find() O(1): a table of 100 000 servers is
 * built (start, reload) in linear time. s->name_hash keys it. */
static struct server **
names_chain(struct backend *be, uint32_t h)
{
	return &be->names[h & (be->nnames - 1)];
}

/* Make room for one more name; 0 or -1 (ENOMEM). */
static int
names_grow(struct backend *be)
{
	struct server	**t, *s, *next;
	size_t		  n = be->nnames ? be->nnames * 2 : 16, old = be->nnames;

	if (be->nservers + 1 <= be->nnames)
		return 0;
	if ((t = calloc(n, sizeof(*t))) == NULL)
		return -1;
	for (size_t i = 0; i < old; i++)
		for (s = be->names[i]; s != NULL; s = next) {
			next = s->name_next;
			s->name_next = t[s->name_hash & (n - 1)];
			t[s->name_hash & (n - 1)] = s;
		}
	free(be->names);
	be->names = t;
	be->nnames = n;
	return 0;
}

struct server *
server_add(struct backend *be, const char *name, const struct sockaddr *sa,
    socklen_t salen, int weight, int maxconn, bool backup,
    enum server_source source)
{
	struct server *s;

	if (server_find(be, name) != NULL) {
		errno = EEXIST;
		return NULL;
	}
	if (names_grow(be) == -1 || (s = calloc(1, sizeof(*s))) == NULL)
		return NULL;
	atomic_init(&s->refs, 1);	/* the table's */
	s->be = be;
	snprintf(s->name, sizeof(s->name), "%s", name);
	memcpy(&s->addr, sa, salen);
	s->addrlen = salen;
	net_addr_str(sa, s->addrstr, sizeof(s->addrstr));
	s->name_hash = name_hash(be->name, s->name);
	s->weight = weight;
	atomic_init(&s->eff_weight, (uint32_t)weight * LOADWEIGHT_SCALE);
	s->maxconn = maxconn;
	atomic_init(&s->send_proxy, SEND_PROXY_UNSET);
	s->backup = backup;
	s->source = source;
	s->admin = ADM_READY;
	s->health = be->conf.check == CHECK_NONE ? HEALTH_UP : HEALTH_CHECKING;
	s->announce_up = true;
	s->in_table = true;
	s->last_change = ev_time();
	TAILQ_INSERT_TAIL(&be->servers, s, entry);
	s->name_next = *names_chain(be, s->name_hash);
	*names_chain(be, s->name_hash) = s;
	be->nservers++;
	if (source == SRC_ANNOUNCED)
		be->ndiscovered++;
	return s;
}

const struct conf_addr *
server_addr_loops(const struct conf *conf, const struct sockaddr *sa)
{
	for (size_t i = 0; conf != NULL && i < conf->nfrontends; i++)
		for (size_t j = 0; j < conf->frontends[i].nbinds; j++)
			if (net_reaches(sa, (const struct sockaddr *)
			    &conf->frontends[i].binds[j].ss))
				return &conf->frontends[i].binds[j];
	return NULL;
}

struct server *
server_find(struct backend *be, const char *name)
{
	struct server	*s;
	uint32_t	 h;

	if (be->nnames == 0)
		return NULL;
	h = name_hash(be->name, name);
	for (s = *names_chain(be, h); s != NULL; s = s->name_next)
		if (s->name_hash == h && strcmp(s->name, name) == 0)
			return s;
	return NULL;
}

void
server_remove(struct server *s)
{
	struct backend *be = s->be;

	if (!s->in_table)
		return;
	for (struct server **pp = names_chain(be, s->name_hash); *pp != NULL;
	    pp = &(*pp)->name_next)
		if (*pp == s) {
			*pp = s->name_next;
			break;
		}
	s->name_next = NULL;
	TAILQ_REMOVE(&be->servers, s, entry);
	be->nservers--;
	if (s->source == SRC_ANNOUNCED)
		be->ndiscovered--;
	s->in_table = false;
	server_unref(s);
}

/* ---- The door ------------------------------------------------------ */

void
table_set_observer(const struct table_observer *o)
{
	observer = o;
}

/* server_add() with the spec's announced facts and the `joined` event,
 * no publish. */
static struct server *
join_quiet(struct backend *be, const struct server_spec *spec,
    enum server_source source)
{
	struct server *s;

	s = server_add(be, spec->name, spec->addr, spec->addrlen,
	    spec->weight, spec->maxconn, spec->backup, source);
	if (s == NULL)
		return NULL;
	if (be->conf.check != CHECK_NONE)
		s->health = spec->health;
	s->announce_up = !spec->draining;
	if (spec->own_send_proxy)
		atomic_store(&s->send_proxy, spec->send_proxy);
	if (spec->label != NULL)
		snprintf(s->label, sizeof(s->label), "%s", spec->label);
	events_add(EV_KIND_TABLE, be->name, s->name, "joined (%s, %s)",
	    server_source_name(source), s->addrstr);
	if (observer != NULL && observer->joined != NULL)
		observer->joined(s);
	return s;
}

void
server_spec_conf(struct server_spec *spec, const struct conf_server *cs)
{
	static const enum server_health init[] = {
		[INIT_UP] = HEALTH_UP,
		[INIT_CHECKING] = HEALTH_CHECKING,
		[INIT_DOWN] = HEALTH_DOWN,
	};

	memset(spec, 0, sizeof(*spec));
	spec->name = cs->name;
	spec->addr = (const struct sockaddr *)&cs->addr.ss;
	spec->addrlen = cs->addr.len;
	spec->weight = cs->weight;
	spec->maxconn = cs->maxconn;
	spec->backup = cs->backup;
	spec->own_send_proxy = true;
	spec->send_proxy = cs->send_proxy;
	spec->health = (size_t)cs->init_state < sizeof(init) / sizeof(init[0]) ?
	    init[cs->init_state] : HEALTH_CHECKING;
}

struct server *
server_join(struct backend *be, const struct server_spec *spec,
    enum server_source source)
{
	struct server *s;

	if ((s = join_quiet(be, spec, source)) != NULL)
		server_republish(be);
	return s;
}

void
server_leave(struct server *s)
{
	struct backend *be = s->be;

	if (!s->in_table)
		return;
	events_add(EV_KIND_TABLE, be->name, s->name, "left (%s)",
	    server_source_name(s->source));
	if (observer != NULL && observer->leaving != NULL)
		observer->leaving(s);
	server_remove(s);	/* may free s: the table's reference */
	server_republish(be);
}

void
server_set_weight(struct server *s, int weight, const char *why)
{
	if (s->weight == weight)
		return;
	log_info("server %s/%s: weight %d -> %d (%s)", s->be->name, s->name,
	    (int)s->weight, weight, why);
	events_add(EV_KIND_STATE, s->be->name, s->name, "weight %d -> %d "
	    "(%s)", (int)s->weight, weight, why);
	s->weight = weight;
	server_republish(s->be);
}

const char *
server_fault_name(enum server_fault f)
{
	static const char *const names[] = { "none", "delay", "reset",
	    "blackhole" };

	return (size_t)f < sizeof(names) / sizeof(names[0]) ? names[f] : "?";
}

void
server_set_fault(struct server *s, enum server_fault f, uint32_t delay_ms)
{
	char what[48];

	if (f == FAULT_DELAY)
		snprintf(what, sizeof(what), "delay %" PRIu32 "ms", delay_ms);
	else
		snprintf(what, sizeof(what), "%s", server_fault_name(f));
	atomic_store_explicit(&s->fault_delay_ms, f == FAULT_DELAY ? delay_ms :
	    0, memory_order_relaxed);
	atomic_store_explicit(&s->fault, f, memory_order_relaxed);
	if (f == FAULT_NONE)
		log_info("server %s/%s: fault injection off", s->be->name,
		    s->name);
	else
		log_warnx("server %s/%s: fault injection: %s (new sessions)",
		    s->be->name, s->name, what);
	events_add(EV_KIND_FAULT, s->be->name, s->name, "fault %s", what);
}

void
server_set_send_proxy(struct server *s, enum conf_send_proxy v)
{
	if (atomic_load(&s->send_proxy) == (int)v)
		return;
	log_info("server %s/%s: send_proxy %s", s->be->name, s->name,
	    v == SEND_PROXY_V2 ? "v2" : v == SEND_PROXY_V1 ? "v1" : "none");
	atomic_store(&s->send_proxy, v);
}

void
server_set_limits(struct server *s, int maxconn, bool backup)
{
	if (s->maxconn == maxconn && s->backup == backup)
		return;
	log_info("server %s/%s: maxconn %d%s", s->be->name, s->name, maxconn,
	    backup ? " backup" : "");
	s->maxconn = maxconn;
	s->backup = backup;
	server_republish(s->be);
}

void
server_set_announced(struct server *s, bool up, const char *label)
{
	snprintf(s->label, sizeof(s->label), "%s", label != NULL ? label : "");
	if (s->announce_up == up)
		return;
	log_info("server %s/%s: announced %s (%s)", s->be->name, s->name,
	    up ? "up" : "draining", up ? "back from draining" :
	    "no new sessions");
	events_add(EV_KIND_ANNOUNCE, s->be->name, s->name, "announced %s",
	    up ? "up" : "draining");
	s->announce_up = up;
	s->last_change = ev_time();
	server_republish(s->be);
}

void
server_set_check_result(struct server *s, const char *code,
    const char *detail, double duration_ms, double when)
{
	snprintf(s->check_result, sizeof(s->check_result), "%s", code);
	snprintf(s->check_detail, sizeof(s->check_detail), "%s", detail);
	s->check_duration_ms = duration_ms;
	s->last_check = when;
}

void
backend_set_conf(struct backend *be, const struct conf_backend *cb)
{
	struct conf_backend was = be->conf;

	be->conf = *cb;
	be->conf.servers = NULL;	/* not ours: the conf is freed */
	be->conf.nservers = 0;
	atomic_store(&be->fall, cb->fall > 0 ? cb->fall : 3);
	if (observer != NULL && observer->backend_changed != NULL)
		observer->backend_changed(be, &was);
	server_republish(be);
}

void
backend_retire(struct backend *be)
{
	struct server *s;

	if (observer == NULL || observer->leaving == NULL)
		return;
	TAILQ_FOREACH(s, &be->servers, entry)
		observer->leaving(s);
}

void
table_batch_begin(void)
{
	batch_depth++;
}

void
table_batch_end(void)
{
	if (batch_depth > 0 && --batch_depth > 0)
		return;
	/* server_republish() outside a batch publishes at once. */
	for (size_t i = 0; i < ndirty; i++)
		server_republish(dirty[i]);
	free(dirty);
	dirty = NULL;
	ndirty = dirty_cap = 0;
}

/* Inside a batch: remember be (once); false if it must publish now. */
static bool
dirty_mark(struct backend *be)
{
	struct backend **d;

	if (batch_depth == 0)
		return false;
	for (size_t i = 0; i < ndirty; i++)
		if (dirty[i] == be)
			return true;
	if (ndirty == dirty_cap) {
		size_t n = dirty_cap ? 2 * dirty_cap : 16;

		if ((d = reallocarray(dirty, n, sizeof(*d))) == NULL)
			return false;
		dirty = d;
		dirty_cap = n;
	}
	dirty[ndirty++] = be;
	return true;
}

static void
dirty_forget(struct backend *be)
{
	for (size_t i = 0; i < ndirty; i++)
		if (dirty[i] == be)
			dirty[i--] = dirty[--ndirty];
}

static const char *const health_names[] = {
	[HEALTH_CHECKING] = "checking",
	[HEALTH_UP] = "up",
	[HEALTH_DOWN] = "down",
};

static const char *const admin_names[] = {
	[ADM_READY] = "ready",
	[ADM_DRAIN] = "drain",
	[ADM_MAINT] = "maint",
};

const char *
server_health_name(enum server_health h)
{
	return (size_t)h < sizeof(health_names) / sizeof(health_names[0]) ?
	    health_names[h] : "checking";
}

const char *
server_admin_name(enum server_admin a)
{
	return (size_t)a < sizeof(admin_names) / sizeof(admin_names[0]) ?
	    admin_names[a] : "ready";
}

void
server_set_health(struct server *s, enum server_health h, const char *reason)
{
	bool was;

	if (s->health == h)
		return;
	was = server_eligible(s);
	log_msg(h == HEALTH_DOWN ? LOG_LVL_WARN : LOG_LVL_INFO,
	    "server %s/%s: %s -> %s (%s)", s->be->name, s->name,
	    health_names[s->health], health_names[h], reason);
	events_add(EV_KIND_STATE, s->be->name, s->name, "%s -> %s (%s)",
	    health_names[s->health], health_names[h], reason);
	s->health = h;
	s->last_change = ev_time();
	if (h == HEALTH_UP)
		atomic_store_explicit(&s->fail_streak, 0, memory_order_relaxed);
	if (was != server_eligible(s))
		server_republish(s->be);
}

void
server_set_admin(struct server *s, enum server_admin a, const char *reason)
{
	bool was;

	if (s->admin == a)
		return;
	was = server_eligible(s);
	log_info("server %s/%s: admin %s -> %s (%s)", s->be->name, s->name,
	    admin_names[s->admin], admin_names[a], reason);
	events_add(EV_KIND_STATE, s->be->name, s->name, "admin %s -> %s "
	    "(%s)", admin_names[s->admin], admin_names[a], reason);
	s->admin = a;
	s->last_change = ev_time();
	if (was != server_eligible(s))
		server_republish(s->be);
	if (observer != NULL && observer->admin_changed != NULL)
		observer->admin_changed(s);
}

void
server_set_passive_hook(void (*fn)(void))
{
	atomic_store(&passive_hook, fn);
}

void
server_note_failure(struct server *s)
{
	uint32_t n;
	void	 (*hook)(void);

	n = atomic_fetch_add_explicit(&s->fail_streak, 1,
	    memory_order_relaxed) + 1;
	if (n == (uint32_t)atomic_load_explicit(&s->be->fall,
	    memory_order_relaxed) && (hook = atomic_load(&passive_hook)) != NULL)
		hook();
}

void
server_note_success(struct server *s)
{
	if (atomic_load_explicit(&s->fail_streak, memory_order_relaxed) != 0)
		atomic_store_explicit(&s->fail_streak, 0, memory_order_relaxed);
}

bool
server_eligible(const struct server *s)
{
	return s->in_table && s->health == HEALTH_UP &&
	    s->admin == ADM_READY && s->announce_up && s->weight > 0;
}

const char *
server_state_name(const struct server *s)
{
	if (s->admin == ADM_MAINT)
		return "maint";
	if (s->admin == ADM_DRAIN || !s->announce_up)
		return "drain";
	switch (s->health) {
	case HEALTH_UP:
		return "up";
	case HEALTH_DOWN:
		return "down";
	default:
		return "checking";
	}
}

const char *
server_source_name(enum server_source src)
{
	switch (src) {
	case SRC_ANNOUNCED:
		return "announced";
	case SRC_ADMIN:
		return "admin";
	case SRC_DNS:
		return "dns";
	default:
		return "static";
	}
}

void
server_ref(struct server *s)
{
	atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
}

void
server_unref(struct server *s)
{
	if (s == NULL)
		return;
	if (atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) == 1) {
		SSL_SESSION_free(s->tls_sess);
		free(s->lat_win);
		free(s);
	}
}

struct pool *
server_pool_new(struct backend *be, struct server *const *srv, size_t n)
{
	struct pool	*p;

	for (size_t i = 0; i < n; i++)
		server_ref(srv[i]);
	if ((p = balance_pool_new(be, srv, n)) == NULL) {
		for (size_t i = 0; i < n; i++)
			server_unref(srv[i]);
		errno = ENOMEM;
	}
	return p;
}

static void
group_unref(struct pool_group *g)
{
	for (size_t i = 0; i < g->n; i++)
		server_unref(g->srv[i]);
}

void
server_pool_free(struct pool *p)
{
	if (p == NULL)
		return;
	group_unref(&p->primary);
	group_unref(&p->backup);
	balance_pool_free(p);
}

struct server *
server_pick(struct pool *p, struct pick *pk)
{
	struct server	*s;

	if ((s = balance_pick(p, pk)) != NULL)
		server_ref(s);
	return s;
}

void
server_done(struct server *s)
{
	if (s == NULL)
		return;
	balance_done(s);
	server_unref(s);
}

uint32_t
server_eff_weight_at(const struct server *s, double now)
{
	struct loadweight_report r = {
		.have = s->load_have,
		.load = s->load,
		.age_ms = now > s->load_at ?
		    (uint64_t)((now - s->load_at) * 1000) : 0,
		.interval_ms = s->load_interval_ms,
	};
	uint64_t up = s->elig_since > 0 && now > s->elig_since ?
	    (uint64_t)((now - s->elig_since) * 1000) : 0;

	return loadweight_effective(atomic_load(&s->weight), &r, up,
	    s->be->conf.slowstart_ms);
}

int
server_publish(struct backend *be)
{
	struct pool	*p, *old;
	struct server	*s, **elig;
	size_t		 n = 0;
	double		 now = ev_time();

	if ((elig = calloc(be->nservers + 1, sizeof(*elig))) == NULL)
		return -1;
	TAILQ_FOREACH(s, &be->servers, entry) {
		if (!server_eligible(s)) {
			s->elig_since = 0;
			continue;
		}
		if (s->elig_since == 0)
			s->elig_since = now;
		atomic_store_explicit(&s->eff_weight,
		    server_eff_weight_at(s, now), memory_order_relaxed);
		elig[n++] = s;
	}
	p = server_pool_new(be, elig, n);
	free(elig);
	if (p == NULL)
		return -1;
	old = atomic_exchange_explicit(&be->pool, p, memory_order_acq_rel);
	if (old != NULL) {
		old->retired = atomic_fetch_add(&qsbr_global, 1) + 1;
		old->next_retired = retired_head;
		retired_head = old;
		if (qsbr_waker != NULL)
			qsbr_waker();
	}
	return 0;
}

void
server_set_load(struct server *s, int load, int64_t conns,
    uint32_t interval_ms)
{
	bool had = s->load_have;

	s->load_conns = load >= 0 ? conns : -1;
	s->load_have = load >= 0;
	s->load = load;
	s->load_at = ev_time();
	s->load_interval_ms = interval_ms;
	if (had != s->load_have)
		log_info("server %s/%s: %s", s->be->name, s->name,
		    s->load_have ? "reports its load" :
		    "no longer reports its load");
	if (s->elig_since != 0 && server_eff_weight_at(s, s->load_at) !=
	    atomic_load_explicit(&s->eff_weight, memory_order_relaxed))
		server_republish(s->be);
}

void
server_weights_tick(struct backend_list *backends)
{
	struct backend	*be;
	struct server	*s;
	double		 now = ev_time();

	TAILQ_FOREACH(be, backends, entry) {
		TAILQ_FOREACH(s, &be->servers, entry) {
			if (s->elig_since == 0)
				continue;
			if (server_eff_weight_at(s, now) != atomic_load_explicit(
			    &s->eff_weight, memory_order_relaxed)) {
				server_republish(be);
				break;
			}
		}
	}
}

void
server_republish(struct backend *be)
{
	if (dirty_mark(be))
		return;
	if (server_publish(be) == -1)
		log_warn("backend %s: cannot publish", be->name);
}

void
qsbr_register(_Atomic uint64_t *slot)
{
	pthread_mutex_lock(&qsbr_lock);
	atomic_store(slot, atomic_load(&qsbr_global));
	for (int i = 0; i < QSBR_MAX_SLOTS; i++) {
		if (qsbr_slots[i] == NULL) {
			qsbr_slots[i] = slot;
			if (i >= atomic_load(&qsbr_nslots))
				atomic_store(&qsbr_nslots, i + 1);
			break;
		}
	}
	pthread_mutex_unlock(&qsbr_lock);
}

void
qsbr_unregister(_Atomic uint64_t *slot)
{
	pthread_mutex_lock(&qsbr_lock);
	for (int i = 0; i < QSBR_MAX_SLOTS; i++)
		if (qsbr_slots[i] == slot)
			qsbr_slots[i] = NULL;
	pthread_mutex_unlock(&qsbr_lock);
}

uint64_t
qsbr_epoch(void)
{
	return atomic_load(&qsbr_global);
}

void
qsbr_set_waker(void (*fn)(void))
{
	qsbr_waker = fn;
}

int
qsbr_defer(void (*free_fn)(void *), bool (*busy)(void *), void *arg)
{
	struct deferred *d;

	if ((d = calloc(1, sizeof(*d))) == NULL)
		return -1;
	d->free_fn = free_fn;
	d->busy = busy;
	d->arg = arg;
	d->retired = atomic_fetch_add(&qsbr_global, 1) + 1;
	d->next = deferred_head;
	deferred_head = d;
	if (qsbr_waker != NULL)
		qsbr_waker();
	return 0;
}

/* The oldest epoch a worker may still be in. */
static uint64_t
qsbr_min(void)
{
	uint64_t	min = UINT64_MAX;

	pthread_mutex_lock(&qsbr_lock);
	for (int i = 0; i < atomic_load(&qsbr_nslots); i++) {
		uint64_t v;

		if (qsbr_slots[i] == NULL)
			continue;
		v = atomic_load(qsbr_slots[i]);
		if (v < min)
			min = v;
	}
	pthread_mutex_unlock(&qsbr_lock);
	return min;
}

void
qsbr_reclaim(void)
{
	struct pool	**pp, *p;
	struct deferred	**dp, *d;
	uint64_t	 min;

	if (retired_head == NULL && deferred_head == NULL)
		return;
	min = qsbr_min();
	pp = &retired_head;
	while ((p = *pp) != NULL) {
		if (p->retired <= min) {
			*pp = p->next_retired;
			server_pool_free(p);
		} else
			pp = &p->next_retired;
	}
	/* Past the epoch no worker can take a new hold: busy() is final. */
	dp = &deferred_head;
	while ((d = *dp) != NULL) {
		if (d->retired <= min && (d->busy == NULL ||
		    !d->busy(d->arg))) {
			*dp = d->next;
			d->free_fn(d->arg);
			free(d);
		} else
			dp = &d->next;
	}
	if ((retired_head != NULL || deferred_head != NULL) &&
	    qsbr_waker != NULL)
		qsbr_waker();
}

void
qsbr_drain(void)
{
	struct pool	*p;
	struct deferred	*d;

	while ((p = retired_head) != NULL) {
		retired_head = p->next_retired;
		server_pool_free(p);
	}
	while ((d = deferred_head) != NULL) {
		deferred_head = d->next;
		d->free_fn(d->arg);
		free(d);
	}
}
