/*
 * dns.c - servers found in DNS: `[backend] resolve = NAME:PORT`.
 *
 * Each such backend has a watch on the control loop: a c-ares resolver
 * (resolve.c, never blocking the loop) asked for NAME's A and AAAA
 * records, again after the answer's TTL kept within [resolve_min,
 * resolve_max]. Every address of an answer is a server (source `dns`,
 * named dns-ADDR-PORT) that joins through the table's door like an
 * announced one: health-checked as the backend says, shown everywhere.
 * An address missing from the next answer leaves (its sessions finish).
 *
 *   answer with addresses  -> the set becomes exactly those (at most
 *                             max_discovered), next query after the TTL
 *   no such name / no data -> the set is kept for resolve_hold, then
 *                             emptied (HAProxy's `hold nx`)
 *   failure (timeout,      -> the set is kept as it was, counted, said
 *   SERVFAIL, refused)        once per change; next try after resolve_min
 */
#include <sys/queue.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ev.h>

#include "dns.h"
#include "log.h"
#include "net.h"
#include "resolve.h"
#include "server.h"

struct dns_watch {
	TAILQ_ENTRY(dns_watch)	 entry;
	struct backend		*be;
	char			 name[254];
	int			 port;		/* 0: SRV, ports from records */
	char			 resolvers[512];
	struct resolver		*res;
	ev_timer		 timer;
	ev_tstamp		 empty_since;	/* first empty answer in a row */
	char			 err[96];	/* last failure; "" = answering */
	bool			 seen;		/* reload: still configured */
	struct {
		uint64_t	 queries, answers, empty, failures;
		unsigned	 ttl;
	}			 st;
};

static TAILQ_HEAD(, dns_watch)	 watches = TAILQ_HEAD_INITIALIZER(watches);
static struct ev_loop		*dloop;
static struct backend_list	*dbackends;

static void	watch_query(struct dns_watch *);

static double
clamp_s(uint32_t v_ms, uint32_t lo_ms, uint32_t hi_ms)
{
	if (v_ms < lo_ms)
		v_ms = lo_ms;
	if (v_ms > hi_ms)
		v_ms = hi_ms;
	return v_ms / 1000.0;
}

static void
watch_after(struct dns_watch *w, double s)
{
	ev_timer_stop(dloop, &w->timer);
	ev_timer_set(&w->timer, s, 0);
	ev_timer_start(dloop, &w->timer);
}

/* dns-ADDR-PORT, a valid server name: "dns-10.0.0.5-80",
 * "dns-fd00--5-80". */
static void
server_name_of(const struct sockaddr_storage *ss, char *buf, size_t len)
{
	char	host[INET6_ADDRSTRLEN];	/* with "dns-" and "-65535": < 64 */

	net_host_str((const struct sockaddr *)ss, host, sizeof(host));
	for (char *p = host; *p != '\0'; p++)
		if (*p == ':')
			*p = '-';
	snprintf(buf, len, "dns-%s-%d", host, net_port((const struct
	    sockaddr *)ss));
}

static bool
in_answer(const struct server *s, const struct sockaddr_storage *addrs,
    size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (net_addr_equal((const struct sockaddr *)&s->addr,
		    (const struct sockaddr *)&addrs[i]))
			return true;
	return false;
}

/* An SRV weight (0-65535) as a server weight (1-256): scaled down only
 * when some weight is above 256, so that their ratios stay. */
static int
srv_weight(unsigned short w, unsigned short wmax)
{
	long v = wmax > 256 ? (long)w * 256 / wmax : w;

	return v < 1 ? 1 : (int)v;
}

/* The backend's DNS servers become exactly a's addresses (a NULL: none);
 * from SRV, each with its record's weight, and backup unless its priority
 * is the lowest (shoal has one backup tier). */
static void
watch_apply(struct dns_watch *w, const struct resolve_answer *a)
{
	static const enum server_health init[] = {
		[INIT_UP] = HEALTH_UP,
		[INIT_CHECKING] = HEALTH_CHECKING,
		[INIT_DOWN] = HEALTH_DOWN,
	};
	struct backend		*be = w->be;
	struct server		*s, *next;
	struct server_spec	 spec;
	char			 name[CONF_NAME_MAX];
	const struct sockaddr_storage *addrs = a != NULL ? a->addrs : NULL;
	size_t			 n = a != NULL ? a->n : 0;
	unsigned short		 pmin = 65535, wmax = 0;
	int			 weight;
	bool			 backup;

	for (size_t i = 0; a != NULL && a->weight != NULL && i < n; i++) {
		if (a->priority[i] < pmin)
			pmin = a->priority[i];
		if (a->weight[i] > wmax)
			wmax = a->weight[i];
	}
	table_batch_begin();
	for (s = TAILQ_FIRST(&be->servers); s != NULL; s = next) {
		next = TAILQ_NEXT(s, entry);
		if (s->source != SRC_DNS || in_answer(s, addrs, n))
			continue;
		log_info("server %s/%s: gone from %s (%u sessions finish on "
		    "it)", be->name, s->name, w->name, atomic_load(&s->cur));
		server_leave(s);
	}
	for (size_t i = 0; i < n; i++) {
		weight = a->weight != NULL ? srv_weight(a->weight[i], wmax) : 1;
		backup = a->priority != NULL && a->priority[i] != pmin;
		server_name_of(&addrs[i], name, sizeof(name));
		if ((s = server_find(be, name)) != NULL) {
			if (s->source == SRC_DNS && a->weight != NULL) {
				server_set_weight(s, weight, "DNS");
				server_set_limits(s, s->maxconn, backup);
			}
			continue;
		}
		memset(&spec, 0, sizeof(spec));
		spec.name = name;
		spec.addr = (const struct sockaddr *)&addrs[i];
		spec.addrlen = addrs[i].ss_family == AF_INET ?
		    sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
		spec.weight = weight;
		spec.backup = backup;
		spec.health = (size_t)be->conf.init_state <
		    sizeof(init) / sizeof(init[0]) ?
		    init[be->conf.init_state] : HEALTH_CHECKING;
		if ((s = server_join(be, &spec, SRC_DNS)) == NULL) {
			log_warn("server %s/%s: not added from %s", be->name,
			    name, w->name);
			continue;
		}
		log_info("server %s/%s: added from %s (%s)", be->name,
		    s->name, w->name, s->addrstr);
	}
	table_batch_end();
}

static size_t
dns_servers(const struct backend *be)
{
	const struct server	*s;
	size_t			 n = 0;

	TAILQ_FOREACH(s, &be->servers, entry)
		if (s->source == SRC_DNS)
			n++;
	return n;
}

static void
answer_cb(void *arg, const char *name, const struct resolve_answer *a)
{
	struct dns_watch	*w = arg;
	const struct conf_backend *cb = &w->be->conf;
	ev_tstamp		 now = ev_now(dloop);

	(void)name;
	if (a->n > 0) {
		w->st.answers++;
		if (w->err[0] != '\0' || w->empty_since > 0)
			log_info("backend %s: %s answers again (%zu addresses)",
			    w->be->name, w->name, a->n);
		w->err[0] = '\0';
		w->empty_since = 0;
		w->st.ttl = a->ttl;
		watch_apply(w, a);
		watch_after(w, clamp_s(a->ttl * 1000u, cb->resolve_min_ms,
		    cb->resolve_max_ms));
		return;
	}
	if (a->nx) {
		w->st.empty++;
		if (w->empty_since == 0) {
			w->empty_since = now;
			log_warnx("backend %s: %s has no address; its %zu "
			    "servers stay for resolve_hold (%ums)", w->be->name,
			    w->name, dns_servers(w->be), cb->resolve_hold_ms);
		}
		if ((now - w->empty_since) * 1000 >= cb->resolve_hold_ms &&
		    dns_servers(w->be) > 0) {
			log_warnx("backend %s: %s still has no address after "
			    "resolve_hold: its servers leave", w->be->name,
			    w->name);
			watch_apply(w, NULL);
		}
	} else {
		w->st.failures++;
		if (strcmp(w->err, a->err) != 0)
			log_warnx("backend %s: resolving %s failed (%s); the %zu "
			    "servers found before stay", w->be->name, w->name,
			    a->err, dns_servers(w->be));
		snprintf(w->err, sizeof(w->err), "%s", a->err);
	}
	watch_after(w, clamp_s(cb->resolve_min_ms, cb->resolve_min_ms,
	    cb->resolve_max_ms));
}

static void
watch_query(struct dns_watch *w)
{
	size_t max = w->be->conf.max_discovered > 0 ?
	    (size_t)w->be->conf.max_discovered : 1;

	w->st.queries++;
	if ((w->port == 0 ? resolver_srv(w->res, w->name, max, answer_cb, w) :
	    resolver_query(w->res, w->name, AF_UNSPEC, (unsigned short)w->port,
	    max, answer_cb, w)) == -1) {
		log_warn("backend %s: resolving %s", w->be->name, w->name);
		watch_after(w, w->be->conf.resolve_min_ms / 1000.0);
	}
}

static void
timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	(void)loop;
	(void)revents;
	watch_query(t->data);
}

static void
watch_free(struct dns_watch *w)
{
	ev_timer_stop(dloop, &w->timer);
	resolver_free(w->res);
	free(w);
}

static struct dns_watch *
watch_new(struct backend *be)
{
	struct dns_watch	*w;
	const char		*why;

	if ((w = calloc(1, sizeof(*w))) == NULL)
		return NULL;
	w->be = be;
	snprintf(w->name, sizeof(w->name), "%s", be->conf.resolve_srv[0] ?
	    be->conf.resolve_srv : be->conf.resolve_name);
	w->port = be->conf.resolve_srv[0] ? 0 : be->conf.resolve_port;
	snprintf(w->resolvers, sizeof(w->resolvers), "%s",
	    be->conf.resolvers);
	if ((w->res = resolver_new(dloop)) == NULL) {
		free(w);
		return NULL;
	}
	if (w->resolvers[0] != '\0' &&
	    resolver_set_servers(w->res, w->resolvers, &why) == -1) {
		log_warnx("backend %s: resolvers %s: %s", be->name,
		    w->resolvers, why);
		watch_free(w);
		return NULL;
	}
	ev_timer_init(&w->timer, timer_cb, 0, 0);
	w->timer.data = w;
	w->seen = true;
	TAILQ_INSERT_TAIL(&watches, w, entry);
	watch_after(w, 0);
	log_info("backend %s: resolving %s (%s%d) every %u-%ums%s%s",
	    be->name, w->name, w->port ? "port " : "SRV", w->port,
	    be->conf.resolve_min_ms,
	    be->conf.resolve_max_ms, w->resolvers[0] ? " via " : "",
	    w->resolvers);
	return w;
}

static bool
resolves(const struct backend *be)
{
	return be->conf.resolve_name[0] != '\0' ||
	    be->conf.resolve_srv[0] != '\0';
}

/* Whether w still asks what be's config says. */
static bool
watch_same(const struct dns_watch *w, const struct backend *be)
{
	const struct conf_backend *cb = &be->conf;

	if (strcmp(w->resolvers, cb->resolvers) != 0)
		return false;
	if (cb->resolve_srv[0] != '\0')
		return w->port == 0 && strcmp(w->name, cb->resolve_srv) == 0;
	return w->port == cb->resolve_port &&
	    strcmp(w->name, cb->resolve_name) == 0;
}

static struct dns_watch *
watch_of(const struct backend *be)
{
	struct dns_watch *w;

	TAILQ_FOREACH(w, &watches, entry)
		if (w->be == be)
			return w;
	return NULL;
}

int
dns_start(struct ev_loop *loop, struct backend_list *backends)
{
	struct backend *be;

	dloop = loop;
	dbackends = backends;
	TAILQ_FOREACH(be, backends, entry)
		if (resolves(be) && watch_new(be) == NULL)
			return -1;
	return 0;
}

int
dns_reload(const struct conf *nc)
{
	struct dns_watch	*w, *next;
	struct backend		*be;
	bool			 live;

	(void)nc;
	TAILQ_FOREACH(w, &watches, entry)
		w->seen = false;
	TAILQ_FOREACH(be, dbackends, entry) {
		if (!resolves(be))
			continue;
		if ((w = watch_of(be)) != NULL && watch_same(w, be)) {
			w->seen = true;
			continue;
		}
		if (w != NULL) {	/* another name: the new one's answer */
			TAILQ_REMOVE(&watches, w, entry);  /* replaces */
			watch_free(w);			  /* the set */
		}
		if (watch_new(be) == NULL)
			log_warnx("backend %s: cannot start resolving",
			    be->name);
	}
	for (w = TAILQ_FIRST(&watches); w != NULL; w = next) {
		next = TAILQ_NEXT(w, entry);
		if (w->seen)
			continue;
		live = false;
		TAILQ_FOREACH(be, dbackends, entry)
			if (be == w->be)
				live = true;
		if (live) {		/* resolve removed: its servers leave */
			log_info("backend %s: no longer resolving %s",
			    w->be->name, w->name);
			watch_apply(w, NULL);
		}
		TAILQ_REMOVE(&watches, w, entry);
		watch_free(w);
	}
	return 0;
}

void
dns_stop(void)
{
	struct dns_watch *w;

	while ((w = TAILQ_FIRST(&watches)) != NULL) {
		TAILQ_REMOVE(&watches, w, entry);
		watch_free(w);
	}
}

static void
view_foreach(void (*fn)(const struct dns_watch_info *, void *), void *arg)
{
	struct dns_watch	*w;
	struct dns_watch_info	 i;

	TAILQ_FOREACH(w, &watches, entry) {
		i.backend = w->be->name;
		i.name = w->name;
		i.servers = dns_servers(w->be);
		i.queries = w->st.queries;
		i.answers = w->st.answers;
		i.empty = w->st.empty;
		i.failures = w->st.failures;
		i.ttl = w->st.ttl;
		i.error = w->err;
		fn(&i, arg);
	}
}

const struct dns_view dns_view = { .foreach = view_foreach };
