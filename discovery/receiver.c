/*
 * receiver.c - the announcement listener (docs/discovery-protocol.md).
 *
 * One UDP socket, bound to the wildcard address and the discovery port,
 * member of the group on one interface; unicast datagrams arrive on the
 * same socket. Each datagram goes through, in order: the codec (size,
 * header, key, tag, field rules), policy, freshness, order. Only then does
 * it touch the table. Every datagram ends in exactly one verdict counter.
 *
 * The announcement table maps (backend, address:port) to an entry: live
 * while its server is in the table, a tombstone after it left or expired.
 * Entries remember the announcer instance, the last seq and timestamp, so
 * a replayed datagram can never bring back a server that left.
 *
 *   datagram -> decode -> policy -> cap -> freshness -> order -> apply
 *                 |         |        |        |            |        |
 *         malformed/unknown policy  cap     stale       replay    ok
 *           _key/bad_mac
 *
 * Each stage is one function (stage_*) and handle() calls them in order.
 */
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/queue.h>
#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>

#include <errno.h>
#include <ifaddrs.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "keys.h"
#include "log.h"
#include "net.h"
#include "receiver.h"

#ifndef IP_MULTICAST_ALL
#define IP_MULTICAST_ALL	49
#endif
#ifndef IPV6_MULTICAST_ALL
#define IPV6_MULTICAST_ALL	29
#endif

#ifndef TAILQ_FOREACH_SAFE	/* glibc's sys/queue.h lacks it */
#define TAILQ_FOREACH_SAFE(var, head, field, tvar)			\
	for ((var) = TAILQ_FIRST(head);					\
	    (var) != NULL && ((tvar) = TAILQ_NEXT(var, field), 1);	\
	    (var) = (tvar))
#endif

#define DISC_RCVBUF		(256 * 1024)	/* absorbs a short stall */
#define DISC_BUDGET_S		0.005	/* s of reading per wake-up, then yield */

struct disc_entry {
	TAILQ_ENTRY(disc_entry)	 entry;
	struct backend		*be;		/* the pool */
	struct sockaddr_storage	 addr;		/* announced address and port */
	socklen_t		 addrlen;
	char			 name[NET_ADDRSTRLEN]; /* "IP:PORT" */
	struct server		*srv;		/* live: our reference; else NULL */
	uint64_t		 instance;	/* last accepted instance */
	uint32_t		 seq;		/* its last seq */
	uint64_t		 ts;		/* its last timestamp (sender clock) */
	uint32_t		 ttl_ms;	/* clamped */
	uint64_t		 last_ms;	/* monotonic, last accepted */
	uint64_t		 deadline;	/* live: expiry; tombstone: forget */
	bool			 draining;	/* last state was draining */
	uint16_t		 weight;	/* last announced weight */
	char			 label[CODEC_LABEL_MAX + 1];
};

TAILQ_HEAD(disc_list, disc_entry);

static struct {
	bool				 running;
	struct ev_loop			*loop;		/* watchers run here, or NULL */
	const struct conf_discovery	*cd;		/* = &cdc while running */
	struct conf_discovery		 cdc;		/* our copy (allow owned) */
	const struct conf		*conf;		/* current config */
	struct backend_list		*backends;
	struct codec_key		 keys[KEYS_MAX];
	size_t				 nkeys;
	int				 fd;
	int				 family;	/* of the socket */
	ev_io				 io;
	ev_timer			 tick;		/* expiry, stall guard */
	ev_timer			 pause;		/* flood: resume reading */
	struct disc_list		 live;
	struct disc_list		 tombs;
	size_t				 ntombs;
	uint64_t			 last_tick;	/* monotonic ms */
	uint64_t			 counters[DISC_NVERDICTS];
	struct ratelimit		 rl[DISC_NVERDICTS];
	struct ratelimit		 rl_sock;	/* socket errors */
	bool				 fake_clock;
	uint64_t			 fake_mono, fake_wall;
} D = { .fd = -1 };

/* A clock in ms, or the unit tests' fake value. */
static uint64_t
clock_ms(clockid_t id, uint64_t fake)
{
	struct timespec	 ts;

	if (D.fake_clock)
		return fake;
	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t
mono_ms(void)
{
	return clock_ms(CLOCK_MONOTONIC, D.fake_mono);
}

static uint64_t
wall_ms(void)
{
	return clock_ms(CLOCK_REALTIME, D.fake_wall);
}

void
discovery_set_clock(uint64_t mono, uint64_t wall)
{
	D.fake_clock = mono != 0 || wall != 0;
	D.fake_mono = mono;
	D.fake_wall = wall;
}

/* ------------------------------------------------------------------ */
/* Addresses. */

static bool
cidr_contains(const struct conf_cidr *c, const struct sockaddr *sa)
{
	const uint8_t	*net, *a;
	size_t		 nl, al;
	int		 full, rest;

	if (c->ss.ss_family != sa->sa_family)
		return false;
	net = net_addr_bytes((const struct sockaddr *)&c->ss, &nl);
	a = net_addr_bytes(sa, &al);
	full = c->prefix / 8;
	rest = c->prefix % 8;
	if (memcmp(net, a, (size_t)full) != 0)
		return false;
	if (rest == 0)
		return true;
	return ((net[full] ^ a[full]) & (0xff << (8 - rest))) == 0;
}

/* An allow entry that is itself a loopback range: 127.x/8 or longer,
 * ::1/128. Only those admit loopback addresses. */
static bool
cidr_is_loopback(const struct conf_cidr *c)
{
	if (c->ss.ss_family == AF_INET)
		return c->prefix >= 8 &&
		    net_is_loopback((const struct sockaddr *)&c->ss);
	return c->prefix == 128 &&
	    net_is_loopback((const struct sockaddr *)&c->ss);
}

/* A v4-mapped IPv6 source (dual-stack socket) as plain IPv4, in place. */
static void
sa_unmap(struct sockaddr_storage *ss)
{
	struct sockaddr_in6	*sin6 = (struct sockaddr_in6 *)ss;
	struct sockaddr_in	 sin;

	if (ss->ss_family != AF_INET6 ||
	    !IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr))
		return;
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = sin6->sin6_port;
	memcpy(&sin.sin_addr, &sin6->sin6_addr.s6_addr[12], 4);
	memset(ss, 0, sizeof(*ss));
	memcpy(ss, &sin, sizeof(sin));
}

/* ------------------------------------------------------------------ */
/* The announcement table. */

static struct disc_entry *
entry_find(struct disc_list *list, const struct backend *be,
    const struct sockaddr *sa)
{
	struct disc_entry *e;

	TAILQ_FOREACH(e, list, entry)
		if (e->be == be &&
		    net_addr_equal((const struct sockaddr *)&e->addr, sa))
			return e;
	return NULL;
}

static uint64_t
tomb_lifetime(void)
{
	/* A datagram stays fresh up to max_skew after its timestamp, which
	 * may itself run max_skew ahead of us: keep the tombstone longer. */
	return 2 * (uint64_t)D.cd->max_skew_ms + 1000;
}

/* Put e (in no list) among the tombstones until now + tomb_lifetime(),
 * dropping the oldest tombstone when there are too many. */
static void
tomb_insert(struct disc_entry *e, uint64_t now)
{
	struct disc_entry	*t, *oldest = NULL;

	e->srv = NULL;
	e->deadline = now + tomb_lifetime();
	if (D.ntombs >= DISC_TOMB_MAX) {
		TAILQ_FOREACH(t, &D.tombs, entry)
			if (oldest == NULL || t->deadline < oldest->deadline)
				oldest = t;
		TAILQ_REMOVE(&D.tombs, oldest, entry);
		free(oldest);
		D.ntombs--;
	}
	TAILQ_INSERT_TAIL(&D.tombs, e, entry);
	D.ntombs++;
}

/* Move a live entry whose server is already out of the table (and whose
 * reference was dropped) to the tombstones. */
static void
entry_bury(struct disc_entry *e, uint64_t now)
{
	TAILQ_REMOVE(&D.live, e, entry);
	tomb_insert(e, now);
}

/* Take the live entry's server out of the table, then bury the entry. */
static void
entry_retire(struct disc_entry *e, uint64_t now, const char *why)
{
	struct server	*s = e->srv;
	struct backend	*be = e->be;

	if (s->in_table) {
		log_info("server %s/%s: removed (%s)", be->name, s->name, why);
		server_leave(s);
	}
	server_unref(s);
	entry_bury(e, now);
}

/* ------------------------------------------------------------------ */
/* One datagram. */

static void
reject_log(enum disc_verdict v, const struct sockaddr *src, const char *why,
    const char *pool)
{
	char		 abuf[NET_ADDRSTRLEN];
	unsigned long	 sup;

	if (!log_ratelimit(&D.rl[v], 1))
		return;
	sup = log_ratelimit_suppressed(&D.rl[v]);
	log_warnx("discovery: %s datagram from %s%s%s%s: %s%s",
	    codec_verdict_name(v), src != NULL ? net_addr_str(src, abuf,
	    sizeof(abuf)) : "?", pool != NULL ? " (pool " : "",
	    pool != NULL ? pool : "", pool != NULL ? ")" : "", why,
	    sup > 0 ? " (and more like it, not logged)" : "");
}

/* Debug: one line per datagram with every counter (tests read these). */
static void
debug_log(enum disc_verdict v, const struct sockaddr *src, const char *why,
    const char *pool)
{
	char	 abuf[NET_ADDRSTRLEN];

	log_debug("discovery: datagram from %s pool %s: %s (%s) counters "
	    "ok=%" PRIu64 " malformed=%" PRIu64 " unknown_key=%" PRIu64
	    " bad_mac=%" PRIu64 " stale=%" PRIu64 " replay=%" PRIu64
	    " policy=%" PRIu64 " cap=%" PRIu64,
	    src != NULL ? net_addr_str(src, abuf, sizeof(abuf)) : "?",
	    pool[0] != '\0' ? pool : "-", codec_verdict_name(v),
	    v == DISC_OK ? "accepted" : why, D.counters[DISC_OK],
	    D.counters[DISC_MALFORMED], D.counters[DISC_UNKNOWN_KEY],
	    D.counters[DISC_BAD_MAC], D.counters[DISC_STALE],
	    D.counters[DISC_REPLAY], D.counters[DISC_POLICY],
	    D.counters[DISC_CAP]);
}

static struct backend *
backend_by_name(const char *name)
{
	struct backend	*be;

	TAILQ_FOREACH(be, D.backends, entry)
		if (strcmp(be->name, name) == 0)
			return be;
	return NULL;
}

/*
 * Policy: may this address be a server of this backend? Returns DISC_OK,
 * or DISC_POLICY with the reason in *why.
 */
static enum disc_verdict
check_policy(struct backend *be, const struct sockaddr *sa, const char *name,
    const struct sockaddr *src, const char **why)
{
	const struct conf_discovery	*cd = D.cd;
	const struct server		*s;
	size_t				 i;
	bool				 allowed = false, loop_ok = false;

	if (be == NULL || !be->conf.discovery) {
		*why = be == NULL ? "no such backend" :
		    "backend has discovery = no";
		return DISC_POLICY;
	}
	for (i = 0; i < cd->nallow; i++) {
		if (!cidr_contains(&cd->allow[i], sa))
			continue;
		allowed = true;
		if (cidr_is_loopback(&cd->allow[i]))
			loop_ok = true;
	}
	if (!allowed) {
		*why = "address outside allow";
		return DISC_POLICY;
	}
	if (net_is_loopback(sa) && !loop_ok) {
		*why = "loopback address, and allow names no loopback range";
		return DISC_POLICY;
	}
	if (cd->require_source_match && (src == NULL ||
	    !net_same_host(sa, src))) {
		*why = "announced address is not the datagram source "
		    "(require_source_match)";
		return DISC_POLICY;
	}
	if (server_addr_loops(D.conf, sa) != NULL) {
		*why = "address is one of shoal's own listen addresses";
		return DISC_POLICY;
	}
	TAILQ_FOREACH(s, &be->servers, entry) {
		if (s->source == SRC_ANNOUNCED)
			continue;
		if (strcmp(s->name, name) == 0 || net_addr_equal(
		    (const struct sockaddr *)&s->addr, sa)) {
			*why = "a static or admin server has this address or "
			    "name";
			return DISC_POLICY;
		}
	}
	return DISC_OK;
}

/* An UP or DRAINING announcement for a server not in the table: add it. */
static enum disc_verdict
apply_add(struct disc_entry *e, const struct codec_msg *m, const char **why)
{
	struct backend	*be = e->be;
	struct server	*s;

	struct server_spec spec = {
		.name = e->name,
		.addr = (const struct sockaddr *)&e->addr,
		.addrlen = e->addrlen,
		.weight = m->weight,
		.maxconn = m->has_maxconn ?
		    (int)(m->maxconn > 1000000 ? 1000000 : m->maxconn) : 0,
		.draining = m->state != CODEC_UP,
		.label = m->label,
	};

	if ((s = server_join(be, &spec, SRC_ANNOUNCED)) == NULL) {
		if (errno == EEXIST) {
			*why = "a server of that name exists";
			return DISC_POLICY;
		}
		*why = "cannot add server (out of memory)";
		return DISC_CAP;
	}
	server_ref(s);
	e->srv = s;
	server_set_load(s, m->has_load ? m->load : -1,
	    m->has_conns ? (int64_t)m->conns : -1,
	    (uint32_t)(e->ttl_ms / 3.5));
	log_info("server %s/%s: added by announcement (%s, weight %u, ttl "
	    "%ums, instance %016" PRIx64 "%s%s%s)", be->name, s->name,
	    codec_state_name(m->state), m->weight, e->ttl_ms, m->instance,
	    m->label[0] != '\0' ? ", label \"" : "", m->label,
	    m->label[0] != '\0' ? "\"" : "");
	return DISC_OK;
}

/* A live server announced again: state, weight, label. */
static void
apply_update(struct disc_entry *e, const struct codec_msg *m)
{
	server_set_announced(e->srv, m->state == CODEC_UP, m->label);
	/* Only a change of the announced weight applies: a weight set by
	 * the admin meanwhile stays until the announcer changes its own. */
	if (e->weight != m->weight)
		server_set_weight(e->srv, m->weight, "announce");
	server_set_load(e->srv, m->has_load ? m->load : -1,
	    m->has_conns ? (int64_t)m->conns : -1,
	    (uint32_t)(e->ttl_ms / 3.5));
}

/* One datagram on its way through the stages. */
struct disc_msg {
	const struct sockaddr	*src;		/* datagram source, or NULL */
	struct codec_msg	 m;		/* decoded */
	struct sockaddr_storage	 addr;		/* announced address:port */
	socklen_t		 addrlen;
	char			 name[NET_ADDRSTRLEN]; /* "IP:PORT" */
	struct backend		*be;		/* the pool */
	struct disc_entry	*e;		/* its entry, or NULL */
	bool			 tomb;		/* e is a tombstone */
	bool			 live;		/* e's server is in the table */
	char			 pool[CODEC_POOL_MAX + 1]; /* "" until decoded */
	const char		*why;		/* reason of a rejection */
};

/* Decode: size, header, key, tag, field rules (the codec); then the
 * announced address as a sockaddr and its name. */
static enum disc_verdict
stage_decode(struct disc_msg *d, const uint8_t *buf, size_t n)
{
	struct sockaddr_in	*sin = (struct sockaddr_in *)&d->addr;
	struct sockaddr_in6	*sin6 = (struct sockaddr_in6 *)&d->addr;
	enum disc_verdict	 v;

	v = codec_decode(buf, n, D.keys, D.nkeys, D.cd->realm,
	    D.cd->auth_none, &d->m, &d->why);
	if (v != DISC_OK)
		return v;
	memcpy(d->pool, d->m.pool, sizeof(d->m.pool));
	memset(&d->addr, 0, sizeof(d->addr));
	if (d->m.ipv6) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(d->m.port);
		memcpy(&sin6->sin6_addr, d->m.addr, 16);
		d->addrlen = sizeof(*sin6);
	} else {
		sin->sin_family = AF_INET;
		sin->sin_port = htons(d->m.port);
		memcpy(&sin->sin_addr, d->m.addr, 4);
		d->addrlen = sizeof(*sin);
	}
	net_addr_str((struct sockaddr *)&d->addr, d->name, sizeof(d->name));
	return DISC_OK;
}

/* Policy: the backend takes announcements, the address may be one of its
 * servers; then find the entry this datagram is about. */
static enum disc_verdict
stage_policy(struct disc_msg *d)
{
	const struct sockaddr	*sa = (const struct sockaddr *)&d->addr;
	enum disc_verdict	 v;

	d->be = backend_by_name(d->m.pool);
	v = check_policy(d->be, sa, d->name, d->src, &d->why);
	if (v != DISC_OK)
		return v;
	d->e = entry_find(&D.live, d->be, sa);
	if (d->e == NULL && (d->e = entry_find(&D.tombs, d->be, sa)) != NULL)
		d->tomb = true;
	d->live = d->e != NULL && !d->tomb && d->e->srv->in_table;
	return DISC_OK;
}

/* Cap: a server not in the table yet needs room under max_discovered. */
static enum disc_verdict
stage_cap(struct disc_msg *d)
{
	if (!d->live && d->m.state != CODEC_LEAVING &&
	    d->be->ndiscovered >= (size_t)d->be->conf.max_discovered) {
		d->why = "backend has max_discovered announced servers";
		return DISC_CAP;
	}
	return DISC_OK;
}

/* Freshness: |now - timestamp| <= max_skew. */
static enum disc_verdict
stage_freshness(struct disc_msg *d)
{
	uint64_t wall = wall_ms(), ts = d->m.timestamp_ms;

	if ((ts > wall ? ts - wall : wall - ts) > D.cd->max_skew_ms) {
		d->why = "timestamp outside max_skew";
		return DISC_STALE;
	}
	return DISC_OK;
}

/* Order: the same instance must count up; a new one must be newer. */
static enum disc_verdict
stage_order(struct disc_msg *d)
{
	const struct disc_entry *e = d->e;

	if (e == NULL)
		return DISC_OK;
	if (d->m.instance == e->instance && d->m.seq <= e->seq) {
		d->why = "seq not newer for this instance";
		return DISC_REPLAY;
	}
	if (d->m.instance != e->instance && d->m.timestamp_ms <= e->ts) {
		d->why = "new instance with an older timestamp";
		return DISC_REPLAY;
	}
	return DISC_OK;
}

/* The entry an accepted datagram applies to: a new one (in no list until
 * the end of apply), or the one found, buried first if the admin deleted
 * its server. NULL when out of memory. */
static struct disc_entry *
apply_entry(struct disc_msg *d, uint64_t now, bool *created)
{
	struct disc_entry *e = d->e;

	*created = false;
	if (e == NULL) {
		if ((e = calloc(1, sizeof(*e))) == NULL)
			return NULL;
		e->be = d->be;
		memcpy(&e->addr, &d->addr, d->addrlen);
		e->addrlen = d->addrlen;
		snprintf(e->name, sizeof(e->name), "%s", d->name);
		*created = d->tomb = true;
	} else if (!d->tomb && !d->live) {
		/* Removed behind our back (admin): it is a tombstone now. */
		server_unref(e->srv);
		entry_bury(e, now);
		d->tomb = true;
	}
	return e;
}

/* LEAVING: the server leaves; the entry is (or stays) a tombstone. */
static void
apply_leave(struct disc_msg *d, struct disc_entry *e, bool created,
    uint64_t now)
{
	if (!d->tomb)
		entry_retire(e, now, "leave");
	else if (created)
		tomb_insert(e, now);
	else
		e->deadline = now + tomb_lifetime();
}

/* Accepted: change the table and remember the announcer. */
static enum disc_verdict
stage_apply(struct disc_msg *d)
{
	const struct codec_msg	*m = &d->m;
	struct disc_entry	*e;
	enum disc_verdict	 v;
	uint64_t		 now = mono_ms();
	bool			 created;

	if ((e = apply_entry(d, now, &created)) == NULL) {
		d->why = "out of memory";
		return DISC_CAP;
	}
	e->ttl_ms = m->ttl_ms < DISC_TTL_MIN ? DISC_TTL_MIN :
	    m->ttl_ms > DISC_TTL_MAX ? DISC_TTL_MAX : m->ttl_ms;
	if (m->state == CODEC_LEAVING) {
		apply_leave(d, e, created, now);
	} else if (d->tomb) {
		if ((v = apply_add(e, m, &d->why)) != DISC_OK) {
			if (created)
				free(e);
			return v;
		}
		if (!created) {
			TAILQ_REMOVE(&D.tombs, e, entry);
			D.ntombs--;
		}
		TAILQ_INSERT_TAIL(&D.live, e, entry);
		e->deadline = now + e->ttl_ms;
	} else {
		apply_update(e, m);
		e->deadline = now + e->ttl_ms;
	}
	e->instance = m->instance;
	e->seq = m->seq;
	e->ts = m->timestamp_ms;
	e->last_ms = now;
	e->draining = m->state == CODEC_DRAINING;
	e->weight = m->weight;
	snprintf(e->label, sizeof(e->label), "%s", m->label);
	return DISC_OK;
}

/* The pipeline: the first stage that says no gives the verdict. */
static enum disc_verdict
handle(struct disc_msg *d, const uint8_t *buf, size_t n)
{
	enum disc_verdict v;

	if ((v = stage_decode(d, buf, n)) != DISC_OK ||
	    (v = stage_policy(d)) != DISC_OK ||
	    (v = stage_cap(d)) != DISC_OK ||
	    (v = stage_freshness(d)) != DISC_OK ||
	    (v = stage_order(d)) != DISC_OK)
		return v;
	return stage_apply(d);
}

enum disc_verdict
discovery_input(const uint8_t *buf, size_t n, const struct sockaddr *src,
    socklen_t srclen)
{
	struct sockaddr_storage	 ss;
	struct disc_msg		 d;
	enum disc_verdict	 v;

	if (!D.running)
		return DISC_POLICY;
	memset(&d, 0, sizeof(d));
	d.why = "?";
	if (src != NULL && srclen <= sizeof(ss)) {
		memset(&ss, 0, sizeof(ss));
		memcpy(&ss, src, srclen);
		sa_unmap(&ss);
		d.src = (const struct sockaddr *)&ss;
	}
	v = handle(&d, buf, n);
	D.counters[v]++;
	if (v != DISC_OK)
		reject_log(v, d.src, d.why, d.pool[0] != '\0' ? d.pool : NULL);
	if (log_enabled(LOG_LVL_DEBUG))
		debug_log(v, d.src, d.why, d.pool);
	return v;
}

/* ------------------------------------------------------------------ */
/* Expiry and the stall guard. */

void
discovery_tick(void)
{
	struct disc_entry	*e, *next;
	uint64_t		 now = mono_ms(), stall;
	size_t			 n = 0;

	if (!D.running)
		return;
	/*
	 * Stall guard: if this loop did not run for longer than the shortest
	 * ttl, announcements could not be read either. Push the deadlines of
	 * entries not refreshed since by the stall, rather than expiring
	 * every server at once.
	 */
	if (D.last_tick != 0 &&
	    now > D.last_tick + DISC_TICK_MS + DISC_TTL_MIN) {
		stall = now - D.last_tick - DISC_TICK_MS;
		TAILQ_FOREACH(e, &D.live, entry) {
			if (e->last_ms <= D.last_tick) {
				e->deadline += stall;
				n++;
			}
		}
		log_warnx("discovery: control loop stalled for %" PRIu64 "ms: "
		    "extended %zu announcement deadlines", stall, n);
	}
	D.last_tick = now;

	table_batch_begin();
	TAILQ_FOREACH_SAFE(e, &D.live, entry, next) {
		if (!e->srv->in_table) {
			/* Deleted by the admin: keep it as a tombstone. */
			server_unref(e->srv);
			entry_bury(e, now);
		} else if (now >= e->deadline) {
			char why[64];

			snprintf(why, sizeof(why), "expired: no announcement "
			    "for %" PRIu64 "ms", now - e->last_ms);
			entry_retire(e, now, why);
		}
	}
	table_batch_end();
	TAILQ_FOREACH_SAFE(e, &D.tombs, entry, next) {
		if (now >= e->deadline) {
			TAILQ_REMOVE(&D.tombs, e, entry);
			D.ntombs--;
			free(e);
		}
	}
}

/* ------------------------------------------------------------------ */
/* Socket and watchers. */

/*
 * Read while there is data and budget: DISC_BATCH datagrams per recvmmsg,
 * until the socket is empty or DISC_BUDGET_S of this wake-up went by;
 * then yield to the rest of the control loop for one turn and go on. Junk
 * is refused by the codec's cheap header checks before any MAC, so the
 * socket is drained faster than a flood can fill it and a real
 * announcement is not dropped by the kernel behind the junk.
 */
static void
io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	static uint8_t		 buf[DISC_BATCH][CODEC_MAX + 1];
	struct sockaddr_storage	 src[DISC_BATCH];
	struct mmsghdr		 msg[DISC_BATCH];
	struct iovec		 iov[DISC_BATCH];
	ev_tstamp		 start = ev_time();
	int			 n, i;

	(void)revents;
	table_batch_begin();
	for (;;) {
		for (i = 0; i < DISC_BATCH; i++) {
			iov[i].iov_base = buf[i];
			iov[i].iov_len = sizeof(buf[i]);
			memset(&msg[i], 0, sizeof(msg[i]));
			msg[i].msg_hdr.msg_name = &src[i];
			msg[i].msg_hdr.msg_namelen = sizeof(src[i]);
			msg[i].msg_hdr.msg_iov = &iov[i];
			msg[i].msg_hdr.msg_iovlen = 1;
		}
		/* A datagram over CODEC_MAX fills its buffer (CODEC_MAX + 1
		 * bytes) and is refused as oversized. */
		n = recvmmsg(w->fd, msg, DISC_BATCH, MSG_DONTWAIT, NULL);
		if (n == -1) {
			if (errno != EAGAIN && errno != EWOULDBLOCK &&
			    errno != EINTR && log_ratelimit(&D.rl_sock, 1))
				log_warn("discovery: recvmmsg");
			break;
		}
		for (i = 0; i < n; i++)
			discovery_input(buf[i], msg[i].msg_len,
			    (struct sockaddr *)&src[i],
			    msg[i].msg_hdr.msg_namelen);
		if (n < DISC_BATCH)
			break;		/* drained */
		if (ev_time() - start >= DISC_BUDGET_S) {
			/* A flood: let the loop's other work run, then on. */
			ev_io_stop(loop, w);
			ev_timer_set(&D.pause, 0, 0);
			ev_timer_start(loop, &D.pause);
			break;
		}
	}
	table_batch_end();
}

static void
pause_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	(void)t;
	(void)revents;
	ev_io_start(loop, &D.io);
}

static void
tick_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	(void)loop;
	(void)t;
	(void)revents;
	discovery_tick();
}

static int
setopt(int fd, int level, int name, int v)
{
	return setsockopt(fd, level, name, &v, sizeof(v));
}

/* The socket: wildcard bind, group joined on the interface. -1 on error
 * (logged). */
static int
open_socket(const struct conf_discovery *cd)
{
	const struct sockaddr	*g;
	struct sockaddr_in	 sin;
	struct sockaddr_in6	 sin6;
	struct ip_mreqn		 mr4;
	struct ipv6_mreq	 mr6;
	char			 gbuf[NET_ADDRSTRLEN];
	unsigned int		 ifindex = 0;
	int			 fd, saved;

	g = (const struct sockaddr *)&cd->group.ss;
	net_host_str(g, gbuf, sizeof(gbuf));
	if (cd->interface[0] != '\0' &&
	    (ifindex = if_nametoindex(cd->interface)) == 0) {
		log_error("discovery: interface %s", cd->interface);
		return -1;
	}
	D.family = g->sa_family;
	fd = socket(D.family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1) {
		log_error("discovery: socket");
		return -1;
	}
	(void)setopt(fd, SOL_SOCKET, SO_REUSEADDR, 1);
	(void)setopt(fd, SOL_SOCKET, SO_RCVBUF, DISC_RCVBUF);
	if (D.family == AF_INET) {
		if (setopt(fd, IPPROTO_IP, IP_MULTICAST_ALL, 0) == -1)
			log_warn("discovery: IP_MULTICAST_ALL");
		(void)setopt(fd, IPPROTO_IP, IP_MULTICAST_TTL, 1);
		memset(&sin, 0, sizeof(sin));
		sin.sin_family = AF_INET;
		sin.sin_port = htons((uint16_t)cd->port);
		if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == -1)
			goto bind_fail;
		memset(&mr4, 0, sizeof(mr4));
		mr4.imr_multiaddr =
		    ((const struct sockaddr_in *)(const void *)g)->sin_addr;
		mr4.imr_ifindex = (int)ifindex;
		if (setsockopt(fd, IPPROTO_IP, IP_ADD_MEMBERSHIP, &mr4,
		    sizeof(mr4)) == -1)
			log_warn("discovery: cannot join %s on %s: only "
			    "unicast announcements will arrive", gbuf,
			    cd->interface[0] ? cd->interface : "any interface");
	} else {
		/* Dual stack: unicast IPv4 announcements arrive here too. */
		(void)setopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, 0);
		if (setopt(fd, IPPROTO_IPV6, IPV6_MULTICAST_ALL, 0) == -1)
			log_warn("discovery: IPV6_MULTICAST_ALL");
		(void)setopt(fd, IPPROTO_IP, IP_MULTICAST_ALL, 0);
		(void)setopt(fd, IPPROTO_IPV6, IPV6_MULTICAST_HOPS, 1);
		memset(&sin6, 0, sizeof(sin6));
		sin6.sin6_family = AF_INET6;
		sin6.sin6_port = htons((uint16_t)cd->port);
		sin6.sin6_addr = in6addr_any;
		if (bind(fd, (struct sockaddr *)&sin6, sizeof(sin6)) == -1)
			goto bind_fail;
		memset(&mr6, 0, sizeof(mr6));
		mr6.ipv6mr_multiaddr =
		    ((const struct sockaddr_in6 *)(const void *)g)->sin6_addr;
		mr6.ipv6mr_interface = ifindex;
		if (setsockopt(fd, IPPROTO_IPV6, IPV6_JOIN_GROUP, &mr6,
		    sizeof(mr6)) == -1)
			log_warn("discovery: cannot join %s on %s: only "
			    "unicast announcements will arrive", gbuf,
			    cd->interface[0] ? cd->interface : "any interface");
	}
	return fd;
bind_fail:
	saved = errno;
	log_error("discovery: cannot bind UDP port %d", cd->port);
	close(fd);
	errno = saved;
	return -1;
}

/* Deep copy of a [discovery] section: the config may be freed by a reload. */
static int
cd_copy(struct conf_discovery *dst, const struct conf_discovery *src)
{
	*dst = *src;
	dst->allow = NULL;
	if (src->nallow > 0) {
		dst->allow = calloc(src->nallow, sizeof(*dst->allow));
		if (dst->allow == NULL)
			return -1;
		memcpy(dst->allow, src->allow, src->nallow * sizeof(*src->allow));
	}
	return 0;
}

static void
cd_free(struct conf_discovery *d)
{
	free(d->allow);
	d->allow = NULL;
	d->nallow = 0;
}

int
discovery_check(const struct conf *conf, char *err, size_t errlen)
{
	const struct conf_discovery	*cd = &conf->discovery;
	struct codec_key		 keys[KEYS_MAX];
	char				 kerr[KEYS_ERR_MAX];
	size_t				 nkeys = 0;

	if (!cd->enabled)
		return 0;
	if (cd->key_file[0] != '\0') {
		if (keys_load(cd->key_file, keys, KEYS_MAX, &nkeys, kerr) ==
		    -1) {
			snprintf(err, errlen, "%s:%d: [discovery] %s",
			    conf->file, cd->line, kerr);
			return -1;
		}
		keys_wipe(keys, nkeys);
	}
	if (nkeys == 0 && !cd->auth_none)
		return 0;		/* the listener stays off */
	if (cd->interface[0] != '\0' && if_nametoindex(cd->interface) == 0) {
		snprintf(err, errlen, "%s:%d: [discovery] interface '%s': %s",
		    conf->file, cd->line, cd->interface, strerror(errno));
		return -1;
	}
	return 0;
}

int
discovery_start(struct ev_loop *loop, const struct conf_discovery *cd,
    struct backend_list *backends, const struct conf *conf)
{
	struct backend	*be;
	char		 err[KEYS_ERR_MAX], gbuf[NET_ADDRSTRLEN];
	size_t		 nwant = 0;

	if (D.running) {
		errno = EALREADY;
		return -1;
	}
	memset(D.counters, 0, sizeof(D.counters));
	TAILQ_INIT(&D.live);
	TAILQ_INIT(&D.tombs);
	D.ntombs = 0;
	D.last_tick = 0;
	D.fd = -1;
	D.loop = NULL;
	D.conf = conf;
	D.backends = backends;
	D.nkeys = 0;
	if (cd_copy(&D.cdc, cd) == -1)
		return -1;
	D.cd = cd = &D.cdc;

	TAILQ_FOREACH(be, backends, entry)
		if (be->conf.discovery)
			nwant++;
	if (!cd->enabled) {
		TAILQ_FOREACH(be, backends, entry)
			if (be->conf.discovery)
				log_warnx("backend %s has discovery = yes but "
				    "there is no [discovery] section: no "
				    "server will be announced into it",
				    be->name);
		return 0;
	}
	if (cd->key_file[0] != '\0' && keys_load(cd->key_file, D.keys,
	    KEYS_MAX, &D.nkeys, err) == -1) {
		log_errorx("discovery: %s", err);
		errno = EINVAL;
		return -1;
	}
	if (D.nkeys == 0 && !cd->auth_none) {
		log_warnx("discovery: no key_file, and auth is not none: the "
		    "announcement listener is off");
		return 0;
	}
	if (cd->auth_none)
		log_warnx("discovery: AUTH = NONE: UNSIGNED ANNOUNCEMENTS ARE "
		    "ACCEPTED. Anyone who can send a UDP datagram to port %d "
		    "can add servers inside 'allow'. Use it on a loopback or "
		    "lab network only; set key_file elsewhere.", cd->port);
	if (nwant == 0)
		log_warnx("discovery: no backend has discovery = yes: every "
		    "announcement will be refused");
	if (loop != NULL) {
		if ((D.fd = open_socket(cd)) == -1) {
			keys_wipe(D.keys, D.nkeys);
			return -1;
		}
		D.loop = loop;
		ev_io_init(&D.io, io_cb, D.fd, EV_READ);
		ev_io_start(loop, &D.io);
		ev_timer_init(&D.pause, pause_cb, 0, 0);
		ev_timer_init(&D.tick, tick_cb, DISC_TICK_MS / 1000.0,
		    DISC_TICK_MS / 1000.0);
		ev_timer_start(loop, &D.tick);
	}
	D.running = true;
	log_info("discovery: listening on UDP port %d, group %s on %s, realm "
	    "\"%s\", %zu key%s%s, %zu backend%s with discovery = yes",
	    cd->port, net_host_str((const struct sockaddr *)&cd->group.ss,
	    gbuf, sizeof(gbuf)), cd->interface[0] ? cd->interface : "(any)",
	    cd->realm, D.nkeys, D.nkeys == 1 ? "" : "s",
	    cd->auth_none ? ", unsigned accepted" : "", nwant,
	    nwant == 1 ? "" : "s");
	return 0;
}

void
discovery_stop(void)
{
	struct disc_entry	*e;

	if (D.loop != NULL) {
		ev_io_stop(D.loop, &D.io);
		ev_timer_stop(D.loop, &D.tick);
		ev_timer_stop(D.loop, &D.pause);
	}
	if (D.fd != -1)
		close(D.fd);
	D.fd = -1;
	while ((e = TAILQ_FIRST(&D.live)) != NULL) {
		TAILQ_REMOVE(&D.live, e, entry);
		server_unref(e->srv);
		free(e);
	}
	while ((e = TAILQ_FIRST(&D.tombs)) != NULL) {
		TAILQ_REMOVE(&D.tombs, e, entry);
		free(e);
	}
	D.ntombs = 0;
	discovery_reload_abort();
	keys_wipe(D.keys, D.nkeys);
	D.nkeys = 0;
	D.running = false;
	D.loop = NULL;
	cd_free(&D.cdc);
	D.conf = NULL;
}

/* A reload's discovery part, made by discovery_reload_prepare() before
 * anything changes, taken by discovery_reload() or dropped. */
static struct {
	bool			 ready;		/* prepared, not yet taken */
	bool			 resock;	/* fd replaces the socket */
	int			 fd;
	struct conf_discovery	 cdc;		/* the new settings' copy */
	struct codec_key	 keys[KEYS_MAX];
	size_t			 nkeys;
} R = { .fd = -1 };

void
discovery_reload_abort(void)
{
	if (!R.ready)
		return;
	net_close(R.fd);
	R.fd = -1;
	keys_wipe(R.keys, R.nkeys);
	R.nkeys = 0;
	cd_free(&R.cdc);
	R.ready = false;
}

int
discovery_reload_prepare(const struct conf *nc, char err[CONF_ERR_MAX])
{
	const struct conf_discovery	*ncd = &nc->discovery;
	char				 kerr[KEYS_ERR_MAX];

	discovery_reload_abort();
	if (!D.running || !ncd->enabled)
		return 0;	/* nothing to take: discovery_reload() says why */
	if (ncd->key_file[0] != '\0' && keys_load(ncd->key_file, R.keys,
	    KEYS_MAX, &R.nkeys, kerr) == -1) {
		snprintf(err, CONF_ERR_MAX, "discovery: %.480s", kerr);
		return -1;
	}
	if (R.nkeys == 0 && !ncd->auth_none) {
		snprintf(err, CONF_ERR_MAX, "discovery: no key_file, and auth "
		    "is not none");
		return -1;
	}
	R.ready = true;	/* from here on, abort cleans up */
	R.resock = D.loop != NULL && (D.cd->port != ncd->port ||
	    strcmp(D.cd->interface, ncd->interface) != 0 ||
	    !net_addr_equal((const struct sockaddr *)&D.cd->group.ss,
	    (const struct sockaddr *)&ncd->group.ss));
	if (R.resock && (R.fd = open_socket(ncd)) == -1) {
		snprintf(err, CONF_ERR_MAX, "discovery: cannot open the socket "
		    "on port %d: %s", ncd->port, strerror(errno));
		discovery_reload_abort();
		return -1;
	}
	if (cd_copy(&R.cdc, ncd) == -1) {
		snprintf(err, CONF_ERR_MAX, "discovery: out of memory");
		discovery_reload_abort();
		return -1;
	}
	return 0;
}

int
discovery_reload(const struct conf *nc)
{
	const struct conf_discovery *ncd = &nc->discovery;

	D.conf = nc;
	if (!D.running) {
		if (ncd->enabled)
			log_warnx("discovery: a [discovery] listener added by "
			    "reload starts at the next restart");
		return 0;
	}
	if (!ncd->enabled) {
		log_warnx("discovery: [discovery] removed by reload: the "
		    "listener keeps its settings until the next restart");
		return -1;
	}
	if (!R.ready)
		return -1;	/* not prepared: keep the settings */
	if (R.resock) {
		ev_io_stop(D.loop, &D.io);
		close(D.fd);
		D.fd = R.fd;
		R.fd = -1;
		ev_io_set(&D.io, D.fd, EV_READ);
		if (!ev_is_active(&D.pause))
			ev_io_start(D.loop, &D.io);
	}
	keys_wipe(D.keys, D.nkeys);
	memcpy(D.keys, R.keys, sizeof(R.keys));
	D.nkeys = R.nkeys;
	keys_wipe(R.keys, R.nkeys);
	R.nkeys = 0;
	cd_free(&D.cdc);
	D.cdc = R.cdc;
	memset(&R.cdc, 0, sizeof(R.cdc));
	D.cd = &D.cdc;
	R.ready = false;
	log_info("discovery: reloaded: %zu key%s%s%s", D.nkeys,
	    D.nkeys == 1 ? "" : "s", ncd->auth_none ? ", unsigned accepted" :
	    "", R.resock ? ", socket reopened" : "");
	return 0;
}

void
discovery_counters(uint64_t out[DISC_NVERDICTS])
{
	memcpy(out, D.counters, sizeof(D.counters));
}

void
discovery_foreach(void (*fn)(const struct discovery_entry_info *, void *),
    void *arg)
{
	struct discovery_entry_info	 info;
	struct disc_entry		*e;
	struct disc_list		*lists[2] = { &D.live, &D.tombs };
	uint64_t			 now = mono_ms();
	int				 i;

	if (!D.running)
		return;
	for (i = 0; i < 2; i++) {
		TAILQ_FOREACH(e, lists[i], entry) {
			memset(&info, 0, sizeof(info));
			info.backend = e->be->name;
			info.name = e->name;
			info.label = e->label;
			info.state = i == 1 ? "gone" : e->draining ?
			    "draining" : "up";
			info.instance = e->instance;
			info.seq = e->seq;
			info.ttl_ms = e->ttl_ms;
			info.age_s = (double)(now - e->last_ms) / 1000.0;
			info.expires_s = e->deadline > now ?
			    (double)(e->deadline - now) / 1000.0 : 0;
			fn(&info, arg);
		}
	}
}

_Static_assert(DISC_NVERDICTS <= DISCOVERY_VERDICTS_MAX,
    "discovery_view: too many verdicts");

const struct discovery_view discovery_view = {
	.nverdicts = DISC_NVERDICTS,
	.verdict_name = codec_verdict_name,
	.counters = discovery_counters,
	.foreach = discovery_foreach,
};
