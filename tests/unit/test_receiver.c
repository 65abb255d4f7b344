/*
 * test_receiver.c - the discovery receiver without sockets: policy,
 * freshness, replay and tombstones, the caps, TTL clamping and expiry, the
 * stall guard, and that every rejected datagram moves exactly one counter
 * and leaves the server table as it was. A fake clock drives time.
 */
#include <sys/stat.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "balance.h"
#include "codec.h"
#include "conf.h"
#include "log.h"
#include "receiver.h"
#include "server.h"
#include "t.h"

#define WALL0	1767225600000ULL	/* 2026-01-01T00:00:00Z */
#define MONO0	1000000ULL

static struct codec_key		 key;
static struct backend_list	 table;
static struct conf		*conf;
static uint64_t			 mono, wall;
static char			 keypath[] = "/tmp/shoal-test-rkeys-XXXXXX";

static const char conf_fmt[] =
	"[global]\nlog_level = %s\n"
	"[frontend web]\n"
	"bind = 127.0.0.1:8080\n"
	"bind = 0.0.0.0:8443\n"
	"backend = app\n"
	"[backend app]\n"
	"server = s1 127.0.0.1:7000\n"
	"discovery = yes\n"
	"max_discovered = 3\n"
	"[backend nodisc]\n"
	"server = n1 127.0.0.1:7001\n"
	"[backend v6]\n"
	"discovery = yes\n"
	"[discovery]\n"
	"key_file = %s\n"
	"realm = lab\n"
	"%s";

static const char allow_default[] =
	"allow = 127.0.0.0/8\n"
	"allow = 10.0.0.0/8\n"
	"allow = fd00::/64\n"
	"max_skew = 10s\n";

static void
clock_set(void)
{
	discovery_set_clock(mono, wall);
}

/* Let time pass in 100 ms steps, ticking like the timer does. */
static void
advance(uint64_t ms)
{
	uint64_t step;

	while (ms > 0) {
		step = ms < DISC_TICK_MS ? ms : DISC_TICK_MS;
		mono += step;
		wall += step;
		ms -= step;
		clock_set();
		discovery_tick();
	}
}

static void
table_free(void)
{
	struct backend *be;

	discovery_stop();
	while ((be = TAILQ_FIRST(&table)) != NULL) {
		TAILQ_REMOVE(&table, be, entry);
		backend_free(be);
	}
	qsbr_drain();
	conf_free(conf);
	conf = NULL;
}

static int
setup(const char *allow)
{
	char	 text[4096], err[CONF_ERR_MAX];
	size_t	 i;

	snprintf(text, sizeof(text), conf_fmt,
	    getenv("TEST_VERBOSE") ? "debug" : "error", keypath, allow);
	if ((conf = conf_load_string("t.ini", text, err)) == NULL) {
		ok(0, "config: %s", err);
		return -1;
	}
	TAILQ_INIT(&table);
	for (i = 0; i < conf->nbackends; i++) {
		struct backend *be = backend_new(&conf->backends[i]);

		TAILQ_INSERT_TAIL(&table, be, entry);	/* a macro: no calls */
	}
	mono = MONO0;
	wall = WALL0;
	clock_set();
	if (discovery_start(NULL, &conf->discovery, &table, conf) == -1) {
		ok(0, "discovery_start: %s", strerror(errno));
		return -1;
	}
	return 0;
}

static struct backend *
be_get(const char *name)
{
	struct backend *be;

	TAILQ_FOREACH(be, &table, entry)
		if (strcmp(be->name, name) == 0)
			return be;
	return NULL;
}

static struct server *
srv(const char *be, const char *name)
{
	return server_find(be_get(be), name);
}

/* A message for pool app, 127.0.0.1:port, instance 1, now. */
static struct codec_msg
msg(uint16_t port, uint32_t seq)
{
	struct codec_msg m;

	memset(&m, 0, sizeof(m));
	m.state = CODEC_UP;
	m.addr[0] = 127;
	m.addr[3] = 1;
	m.port = port;
	m.weight = 1;
	m.ttl_ms = 3500;
	m.seq = seq;
	m.instance = 1;
	m.timestamp_ms = wall;
	snprintf(m.pool, sizeof(m.pool), "app");
	return m;
}

static void
set_v4(struct codec_msg *m, const char *a)
{
	m->ipv6 = false;
	memset(m->addr, 0, 16);
	inet_pton(AF_INET, a, m->addr);
}

static void
set_v6(struct codec_msg *m, const char *a)
{
	m->ipv6 = true;
	inet_pton(AF_INET6, a, m->addr);
}

/* Encode m (signed with key, or with k when not NULL, under realm) and
 * hand it to the receiver as coming from src. */
static enum disc_verdict
deliver(const struct codec_msg *m, const char *src,
    const struct codec_key *k, const char *realm)
{
	struct sockaddr_storage	 ss;
	struct sockaddr_in	*sin = (struct sockaddr_in *)&ss;
	struct sockaddr_in6	*sin6 = (struct sockaddr_in6 *)&ss;
	uint8_t			 buf[CODEC_MAX];
	socklen_t		 len;
	int			 n;

	n = codec_encode(m, k != NULL ? k : &key, realm != NULL ? realm : "lab",
	    buf, sizeof(buf), NULL);
	if (n == -1)
		return (enum disc_verdict)-1;
	memset(&ss, 0, sizeof(ss));
	if (strchr(src, ':') != NULL) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(40000);
		inet_pton(AF_INET6, src, &sin6->sin6_addr);
		len = sizeof(*sin6);
	} else {
		sin->sin_family = AF_INET;
		sin->sin_port = htons(40000);
		inet_pton(AF_INET, src, &sin->sin_addr);
		len = sizeof(*sin);
	}
	return discovery_input(buf, (size_t)n, (struct sockaddr *)&ss, len);
}

/* A fingerprint of the whole table: names, sources, states, weights. */
static void
table_print(char *buf, size_t sz)
{
	struct backend	*be;
	struct server	*s;
	size_t		 n = 0;

	buf[0] = '\0';
	TAILQ_FOREACH(be, &table, entry)
		TAILQ_FOREACH(s, &be->servers, entry)
			n += (size_t)snprintf(buf + n, sz > n ? sz - n : 0,
			    "%s/%s:%s:%s:%d:%s ", be->name, s->name,
			    server_source_name(s->source), server_state_name(s),
			    s->weight, s->label);
}

/*
 * Deliver and check the verdict, that exactly its counter moved by one,
 * and, for a rejection, that the table did not change.
 */
static void
expect(const struct codec_msg *m, const char *src, enum disc_verdict want,
    const char *name)
{
	uint64_t		 before[DISC_NVERDICTS], after[DISC_NVERDICTS];
	char			 t0[4096], t1[4096];
	enum disc_verdict	 v;
	int			 i, moved = 0;
	bool			 exact = true;

	discovery_counters(before);
	table_print(t0, sizeof(t0));
	v = deliver(m, src, NULL, NULL);
	discovery_counters(after);
	table_print(t1, sizeof(t1));
	for (i = 0; i < DISC_NVERDICTS; i++) {
		if (after[i] != before[i])
			moved++;
		if (after[i] != before[i] + (i == (int)want))
			exact = false;
	}
	ok(v == want && exact && moved == 1 &&
	    (want == DISC_OK || strcmp(t0, t1) == 0),
	    "%s -> %s (got %s; one counter +1: %s; table %s)", name,
	    codec_verdict_name(want), codec_verdict_name(v),
	    exact ? "yes" : "no", strcmp(t0, t1) == 0 ? "unchanged" :
	    "changed");
}

struct collect {
	int	 n;
	char	 buf[2048];
	size_t	 len;
};

static void
collect_cb(const struct discovery_entry_info *i, void *arg)
{
	struct collect *c = arg;

	c->n++;
	c->len += (size_t)snprintf(c->buf + c->len, sizeof(c->buf) - c->len,
	    "%s/%s:%s:%u ", i->backend, i->name, i->state, i->ttl_ms);
}

static void
test_lifecycle(void)
{
	struct codec_msg	 m;
	struct server		*s, *held;
	struct backend		*app;
	struct collect		 c;

	if (setup(allow_default) == -1)
		return;
	app = be_get("app");

	m = msg(9001, 1);
	snprintf(m.label, sizeof(m.label), "web-1");
	m.weight = 3;
	expect(&m, "127.0.0.1", DISC_OK, "first announcement");
	s = srv("app", "127.0.0.1:9001");
	ok(s != NULL && s->source == SRC_ANNOUNCED && s->weight == 3 &&
	    strcmp(s->label, "web-1") == 0 && s->announce_up,
	    "server 127.0.0.1:9001 added: announced, weight 3, label");
	ok(s != NULL && server_eligible(s), "eligible (backend has no "
	    "checks)");
	is_int(app->ndiscovered, 1, "ndiscovered 1");
	ok(backend_pool(app)->primary.n == 2, "published: 2 servers in the "
	    "pool");

	expect(&m, "127.0.0.1", DISC_REPLAY, "the same datagram again");
	m.seq = 2;
	m.state = CODEC_DRAINING;
	expect(&m, "127.0.0.1", DISC_OK, "draining");
	ok(!s->announce_up && !server_eligible(s) &&
	    strcmp(server_state_name(s), "drain") == 0 &&
	    backend_pool(app)->primary.n == 1, "draining: no new sessions, "
	    "left the pool, still in the table");
	m.seq = 3;
	m.state = CODEC_UP;
	m.weight = 5;
	expect(&m, "127.0.0.1", DISC_OK, "up again, weight 5");
	ok(s->announce_up && server_eligible(s) && s->weight == 5,
	    "up again with weight 5");
	s->weight = 0;		/* the admin sets weight 0 */
	m.seq = 31;
	expect(&m, "127.0.0.1", DISC_OK, "same weight announced again");
	ok(s->weight == 0, "an admin weight survives repeated announcements");
	s->weight = 5;
	m.seq = 32;

	held = s;
	server_ref(held);	/* a session in flight */
	m.seq = 34;
	m.state = CODEC_LEAVING;
	expect(&m, "127.0.0.1", DISC_OK, "leaving");
	ok(srv("app", "127.0.0.1:9001") == NULL && !held->in_table &&
	    app->ndiscovered == 0 && backend_pool(app)->primary.n == 1,
	    "leaving removes the server at once");
	ok(strcmp(held->name, "127.0.0.1:9001") == 0 &&
	    held->source == SRC_ANNOUNCED, "a session's reference keeps the "
	    "removed server alive");
	server_unref(held);

	m.seq = 33;
	m.state = CODEC_UP;
	expect(&m, "127.0.0.1", DISC_REPLAY, "replayed UP after leave "
	    "(tombstone)");
	m.seq = 35;
	m.state = CODEC_LEAVING;
	expect(&m, "127.0.0.1", DISC_OK, "second LEAVING");
	m.seq = 36;
	expect(&m, "127.0.0.1", DISC_OK, "third LEAVING");
	ok(srv("app", "127.0.0.1:9001") == NULL, "still gone");

	advance(100);
	m = msg(9001, 1);
	m.instance = 2;
	m.timestamp_ms = WALL0 - 1;
	expect(&m, "127.0.0.1", DISC_REPLAY, "new instance, older timestamp");
	m.timestamp_ms = wall;
	expect(&m, "127.0.0.1", DISC_OK, "new instance, newer timestamp "
	    "(restart)");
	ok(srv("app", "127.0.0.1:9001") != NULL, "back after a restart");
	m.seq = 2;
	m.instance = 1;
	m.timestamp_ms = wall - 50;
	expect(&m, "127.0.0.1", DISC_REPLAY, "old instance after the new one");

	/* Freshness. */
	m = msg(9002, 1);
	m.timestamp_ms = wall - 10001;
	expect(&m, "127.0.0.1", DISC_STALE, "timestamp 10.001s old");
	m.timestamp_ms = wall + 10001;
	expect(&m, "127.0.0.1", DISC_STALE, "timestamp 10.001s ahead");
	m.timestamp_ms = wall - 10000;
	expect(&m, "127.0.0.1", DISC_OK, "timestamp exactly max_skew old");

	/* Policy. */
	m = msg(9003, 1);
	snprintf(m.pool, sizeof(m.pool), "nope");
	expect(&m, "127.0.0.1", DISC_POLICY, "no such backend");
	snprintf(m.pool, sizeof(m.pool), "nodisc");
	expect(&m, "127.0.0.1", DISC_POLICY, "backend with discovery = no");
	m = msg(9003, 1);
	set_v4(&m, "192.168.1.1");
	expect(&m, "192.168.1.1", DISC_POLICY, "address outside allow");
	m = msg(9003, 1);
	set_v4(&m, "127.0.0.2");
	expect(&m, "127.0.0.1", DISC_POLICY, "address is not the source");
	m = msg(8080, 1);
	expect(&m, "127.0.0.1", DISC_POLICY, "shoal's own listen address");
	m = msg(8443, 1);
	expect(&m, "127.0.0.1", DISC_POLICY, "loopback on a wildcard bind "
	    "port");
	m = msg(7000, 1);
	expect(&m, "127.0.0.1", DISC_POLICY, "address of a static server");
	ok(srv("app", "s1")->source == SRC_STATIC, "static server untouched");

	/* Cap: max_discovered = 3, two are there. */
	m = msg(9004, 1);
	expect(&m, "127.0.0.1", DISC_OK, "third announced server");
	m = msg(9005, 1);
	expect(&m, "127.0.0.1", DISC_CAP, "fourth: max_discovered");
	m.state = CODEC_LEAVING;
	expect(&m, "127.0.0.1", DISC_OK, "a LEAVING is never capped");
	m = msg(9004, 2);
	expect(&m, "127.0.0.1", DISC_OK, "a known server is never capped");

	/* The codec's verdicts are counted here too. */
	{
		uint64_t		 b[DISC_NVERDICTS], a[DISC_NVERDICTS];
		struct codec_key	 other = key;
		char			 t0[4096], t1[4096];

		other.key[0] ^= 1;
		discovery_counters(b);
		table_print(t0, sizeof(t0));
		m = msg(9006, 1);
		deliver(&m, "127.0.0.1", &other, NULL);
		deliver(&m, "127.0.0.1", NULL, "other-realm");
		other = key;
		other.id = 9;
		deliver(&m, "127.0.0.1", &other, NULL);
		discovery_input((const uint8_t *)"junk", 4, NULL, 0);
		discovery_counters(a);
		table_print(t1, sizeof(t1));
		ok(a[DISC_BAD_MAC] == b[DISC_BAD_MAC] + 2 &&
		    a[DISC_UNKNOWN_KEY] == b[DISC_UNKNOWN_KEY] + 1 &&
		    a[DISC_MALFORMED] == b[DISC_MALFORMED] + 1 &&
		    a[DISC_OK] == b[DISC_OK] && strcmp(t0, t1) == 0,
		    "wrong key, wrong realm, unknown key id, junk: counted, "
		    "table unchanged");
	}

	/* TTL: clamped, then expiry. */
	m = msg(9002, 2);
	m.ttl_ms = 10;
	expect(&m, "127.0.0.1", DISC_OK, "ttl 10ms");
	memset(&c, 0, sizeof(c));
	discovery_foreach(collect_cb, &c);
	ok(strstr(c.buf, "app/127.0.0.1:9002:up:500 ") != NULL,
	    "ttl clamped to 500ms (%s)", c.buf);
	advance(400);
	ok(srv("app", "127.0.0.1:9002") != NULL, "still there after 400ms");
	advance(200);
	ok(srv("app", "127.0.0.1:9002") == NULL, "expired after 600ms");
	m.seq = 1;
	expect(&m, "127.0.0.1", DISC_REPLAY, "replay after expiry "
	    "(tombstone)");
	m.seq = 3;
	m.ttl_ms = 1000000;
	m.timestamp_ms = wall;
	expect(&m, "127.0.0.1", DISC_OK, "same instance, next seq, after "
	    "expiry: back");
	memset(&c, 0, sizeof(c));
	discovery_foreach(collect_cb, &c);
	ok(strstr(c.buf, "app/127.0.0.1:9002:up:60000 ") != NULL,
	    "ttl clamped to 60s (%s)", c.buf);
	ok(strstr(c.buf, "app/127.0.0.1:9005:gone:") != NULL,
	    "tombstones listed");

	/* Admin removal behind discovery's back: re-added by the next one. */
	s = srv("app", "127.0.0.1:9004");
	server_remove(s);
	server_publish(app);
	advance(100);
	m = msg(9004, 3);
	m.timestamp_ms = wall;
	expect(&m, "127.0.0.1", DISC_OK, "announced after an admin del");
	ok(srv("app", "127.0.0.1:9004") != NULL, "re-added");

	table_free();
}

static void
test_stall(void)
{
	struct codec_msg	 m;

	if (setup(allow_default) == -1)
		return;
	m = msg(9001, 1);
	m.ttl_ms = 1000;
	expect(&m, "127.0.0.1", DISC_OK, "announce, ttl 1s");
	advance(500);
	/* The loop stalls for 10 s: no tick, no datagram. */
	mono += 10000;
	wall += 10000;
	clock_set();
	discovery_tick();
	ok(srv("app", "127.0.0.1:9001") != NULL, "after a 10s stall: not "
	    "expired, the deadline moved");
	advance(300);
	ok(srv("app", "127.0.0.1:9001") != NULL, "300ms later: still there");
	advance(200);
	ok(srv("app", "127.0.0.1:9001") == NULL, "then expired: the 500ms "
	    "left before the stall, less one tick");

	/* A short delay (<= the minimum ttl) is not a stall. */
	m = msg(9002, 1);
	m.ttl_ms = 500;
	expect(&m, "127.0.0.1", DISC_OK, "announce, ttl 500ms");
	mono += 550;
	wall += 550;
	clock_set();
	discovery_tick();
	ok(srv("app", "127.0.0.1:9002") == NULL, "550ms without a tick is not "
	    "a stall: expired");
	table_free();
}

static void
test_v6_and_loopback_rule(void)
{
	struct codec_msg	 m;

	if (setup(allow_default) == -1)
		return;
	m = msg(9001, 1);
	snprintf(m.pool, sizeof(m.pool), "v6");
	set_v6(&m, "fd00::5");
	expect(&m, "fd00::5", DISC_OK, "IPv6 announcement");
	ok(srv("v6", "[fd00::5]:9001") != NULL, "named [fd00::5]:9001");
	m = msg(9002, 1);
	snprintf(m.pool, sizeof(m.pool), "v6");
	set_v6(&m, "fd00:1::5");
	expect(&m, "fd00:1::5", DISC_POLICY, "IPv6 outside allow");
	m = msg(9003, 1);
	snprintf(m.pool, sizeof(m.pool), "v6");
	set_v6(&m, "::1");
	expect(&m, "::1", DISC_POLICY, "::1 without ::1/128 in allow");
	m = msg(9004, 1);
	set_v4(&m, "10.1.2.3");
	expect(&m, "::ffff:10.1.2.3", DISC_OK, "v4-mapped source matches");
	table_free();

	/* allow = 0.0.0.0/0 does not name loopback. */
	if (setup("allow = 0.0.0.0/0\nrequire_source_match = no\n") == -1)
		return;
	m = msg(9001, 1);
	expect(&m, "127.0.0.1", DISC_POLICY, "loopback under 0.0.0.0/0");
	m = msg(9002, 1);
	set_v4(&m, "10.9.9.9");
	expect(&m, "192.0.2.7", DISC_OK, "require_source_match = no");
	table_free();
}

/*
 * The stages run in the order decode, policy, cap, freshness, order,
 * apply: a datagram that several stages would refuse gets the verdict of
 * the first one, and only apply changes the table.
 */
static void
test_stage_order(void)
{
	struct codec_msg	 m;
	struct codec_key	 bad = key;
	enum disc_verdict	 v;

	if (setup(allow_default) == -1)
		return;
	bad.key[0] ^= 1;

	/* decode before policy: a bad tag naming a backend without
	 * discovery is bad_mac. */
	m = msg(9101, 1);
	snprintf(m.pool, sizeof(m.pool), "nodisc");
	v = deliver(&m, "127.0.0.1", &bad, NULL);
	ok(v == DISC_BAD_MAC, "bad tag and bad pool: decode speaks first "
	    "(got %s)", codec_verdict_name(v));

	/* policy before freshness. */
	m = msg(9102, 1);
	snprintf(m.pool, sizeof(m.pool), "nodisc");
	m.timestamp_ms = wall - 60000;
	expect(&m, "127.0.0.1", DISC_POLICY, "stale, pool without discovery: "
	    "policy first");

	/* cap before freshness; a LEAVING is never capped. */
	for (int i = 0; i < 3; i++) {
		m = msg((uint16_t)(9110 + i), 1);
		expect(&m, "127.0.0.1", DISC_OK, "fill max_discovered");
	}
	m = msg(9120, 1);
	m.timestamp_ms = wall - 60000;
	expect(&m, "127.0.0.1", DISC_CAP, "stale, over max_discovered: cap "
	    "before freshness");
	m = msg(9121, 1);
	m.state = CODEC_LEAVING;
	expect(&m, "127.0.0.1", DISC_OK, "a LEAVING at the cap is not capped");

	/* freshness before order. */
	m = msg(9110, 5);
	expect(&m, "127.0.0.1", DISC_OK, "seq 5");
	m = msg(9110, 3);
	m.timestamp_ms = wall - 60000;
	expect(&m, "127.0.0.1", DISC_STALE, "stale and an older seq: "
	    "freshness before order");
	m = msg(9110, 3);
	expect(&m, "127.0.0.1", DISC_REPLAY, "fresh, older seq: order");

	/* apply: only now the table changes (an update, then a leave). */
	m = msg(9110, 6);
	m.weight = 9;
	m.state = CODEC_DRAINING;
	expect(&m, "127.0.0.1", DISC_OK, "update: draining, weight 9");
	ok(srv("app", "127.0.0.1:9110") != NULL &&
	    srv("app", "127.0.0.1:9110")->weight == 9 &&
	    !srv("app", "127.0.0.1:9110")->announce_up,
	    "apply: the table's setters took weight and state");
	m = msg(9110, 7);
	m.state = CODEC_LEAVING;
	expect(&m, "127.0.0.1", DISC_OK, "leave");
	ok(srv("app", "127.0.0.1:9110") == NULL, "apply: it left the table");
	table_free();
}

int
main(void)
{
	FILE	*f;
	int	 fd, i;

	TAILQ_INIT(&table);
	key.id = 1;
	key.len = 32;
	for (i = 0; i < 32; i++)
		key.key[i] = (uint8_t)(0xa0 + i);
	if ((fd = mkstemp(keypath)) == -1 || (f = fdopen(fd, "w")) == NULL) {
		ok(0, "key file: %s", strerror(errno));
		return done_testing();
	}
	fprintf(f, "# test keys\n1 ");
	for (i = 0; i < 32; i++)
		fprintf(f, "%02x", key.key[i]);
	fprintf(f, "\n2 00112233445566778899aabbccddeeff\n");
	fclose(f);
	log_set_level(getenv("TEST_VERBOSE") ? LOG_LVL_DEBUG : LOG_LVL_ERROR);

	test_lifecycle();
	test_stall();
	test_v6_and_loopback_rule();
	test_stage_order();
	discovery_set_clock(0, 0);
	unlink(keypath);
	return done_testing();
}
