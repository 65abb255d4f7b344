/*
 * test_stats.c - the stats documents without sockets: built from a real
 * server table (config -> control_build_table), checked for the contract's
 * field names, escaping of what the network controls (announced labels),
 * the Prometheus families, and speed: each document for 1000 servers must
 * take well under 50 ms to generate.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "conf.h"
#include "control.h"
#include "receiver.h"
#include "log.h"
#include "sbuf.h"
#include "server.h"
#include "stats.h"
#include "t.h"

#define NSERVERS	1000
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
/* Sanitizers slow this 2-15x: the bound itself is checked by the normal
 * build; here only a runaway (quadratic) cost would fail. */
#define BUDGET_MS	500.0
#else
#define BUDGET_MS	50.0	/* per document, the bound */
#endif

static double
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static size_t
count(const char *hay, const char *needle)
{
	size_t n = 0;

	for (const char *p = hay; (p = strstr(p, needle)) != NULL; p++)
		n++;
	return n;
}

/* The best of 5 runs of one document, in ms; its text left in out. */
static double
best_of(void (*fn)(struct control *, struct sbuf *), struct control *c,
    struct sbuf *out)
{
	double best = 1e9;

	for (int i = 0; i < 5; i++) {
		double t0;

		sbuf_reset(out);
		t0 = now_ms();
		fn(c, out);
		if (now_ms() - t0 < best)
			best = now_ms() - t0;
	}
	return best;
}

static struct conf *
big_conf(void)
{
	struct sbuf	 t;
	struct conf	*conf;
	char		 err[CONF_ERR_MAX];

	sbuf_init(&t);
	sbuf_puts(&t, "[global]\nlog_level = error\n"
	    "[frontend web]\nbind = 127.0.0.1:18080\nbackend = big\n"
	    "[frontend v6]\nbind = [::1]:18081\nbackend = small\n"
	    "[backend small]\nserver = a 127.0.0.1:7000 weight=3 backup\n"
	    "check = tcp\n"
	    "[backend big]\nbalance = leastconn\n");
	for (int i = 0; i < NSERVERS; i++)
		sbuf_printf(&t, "server = s%04d 127.0.0.1:%d\n", i, 20000 + i);
	conf = conf_load_string("big.ini", t.data, err);
	if (conf == NULL)
		printf("# %s\n", err);
	sbuf_free(&t);
	return conf;
}

int
main(void)
{
	struct control	 c;
	struct conf	*conf;
	struct backend	*small;
	struct server	*a;
	struct sbuf	 out;
	double		 ms;

	log_set_level(LOG_LVL_ERROR);
	conf = big_conf();
	ok(conf != NULL, "a config with %d servers loads", NSERVERS);
	if (conf == NULL)
		return done_testing();
	ok(control_init(&c, conf, NULL) == 0, "control_init");
	c.discovery = &discovery_view;
	ok(control_build_table(&c) == 0, "table built");
	small = control_backend(&c, "small");
	ok(small != NULL, "backend small");
	a = server_find(small, "a");
	ok(a != NULL, "server a");

	/* What the network controls: an announced label. */
	snprintf(a->label, sizeof(a->label), "<script>x&\"y'\n");
	a->source = SRC_ANNOUNCED;
	snprintf(a->check_result, sizeof(a->check_result), "L4CON");
	snprintf(a->check_detail, sizeof(a->check_detail), "refused <b>");
	a->check_duration_ms = 1.5;
	a->last_check = ev_time();
	atomic_store(&a->bytes_in, 1536);
	atomic_store(&a->bytes_out, 5ULL << 30);
	atomic_store(&a->total, 7);
	atomic_store(&a->connect_fail, 2);
	server_set_health(a, HEALTH_DOWN, "test");

	sbuf_init(&out);

	/* /stats.json */
	ms = best_of(stats_json, &c, &out);
	ok(!sbuf_failed(&out), "json built");
	printf("# json: %zu bytes in %.2f ms\n", out.len, ms);
	ok(ms < BUDGET_MS, "json for %d servers in %.2f ms < %.0f ms",
	    NSERVERS, ms, BUDGET_MS);
	ok(strncmp(out.data, "{\"info\":{\"version\":", 19) == 0,
	    "json starts with info");
	ok(out.len > 2 && strcmp(out.data + out.len - 3, "]}\n") == 0,
	    "json ends the document");
	is_int(count(out.data, "\"sessions_active\":"), 2 + 2 + NSERVERS + 1
	    + 1, "sessions_active: info, 2 frontends, 2 backends, servers");
	is_int(count(out.data, "\"last_change_s\":"), NSERVERS + 1,
	    "one last_change_s per server");
	ok(strstr(out.data, "\"label\":\"<script>x&\\\"y'\\n\"") != NULL,
	    "json escapes the label");
	ok(strstr(out.data, "\"bytes_out\":5368709120") != NULL,
	    "64-bit counters");
	ok(strstr(out.data, "\"check\":{\"result\":\"L4CON\",\"detail\":"
	    "\"refused <b>\",\"duration_ms\":1.500,\"age_s\":") != NULL,
	    "check object");
	ok(strstr(out.data, "\"discovery\":{\"ok\":0,\"malformed\":0,"
	    "\"unknown_key\":0,\"bad_mac\":0,\"stale\":0,\"replay\":0,"
	    "\"policy\":0,\"cap\":0}") != NULL, "discovery counters");
	ok(strstr(out.data, "\"state\":\"down\",\"admin\":\"ready\","
	    "\"health\":\"down\"") != NULL, "state, admin, health");
	ok(strstr(out.data, "\"binds\":[\"[::1]:18081\"]") != NULL,
	    "IPv6 bind");

	/* / */
	ms = best_of(stats_html, &c, &out);
	ok(!sbuf_failed(&out), "html built");
	printf("# html: %zu bytes in %.2f ms\n", out.len, ms);
	ok(ms < BUDGET_MS, "html for %d servers in %.2f ms < %.0f ms",
	    NSERVERS, ms, BUDGET_MS);
	is_int(count(out.data, "<tr class=\"server state-"), NSERVERS + 1,
	    "one row per server");
	is_int(count(out.data, "data-state=\"up\""), NSERVERS,
	    "check = none: every big server up");
	ok(strstr(out.data, "data-server=\"small/a\" data-state=\"down\"")
	    != NULL, "the down server's row");
	ok(strstr(out.data, "<script") == NULL, "no script, label escaped");
	ok(strstr(out.data, "&lt;script&gt;x&amp;&quot;y&#39;") != NULL,
	    "html escapes the label");
	ok(strstr(out.data, "refused &lt;b&gt;") != NULL,
	    "html escapes the check detail");
	ok(strstr(out.data, "5.0 GiB") != NULL && strstr(out.data, "1.5 KiB")
	    != NULL, "bytes in human units");
	ok(strstr(out.data, "<meta http-equiv=refresh content=\"5\">") != NULL,
	    "meta refresh, default 5 s");
	ok(strstr(out.data, "src=") == NULL && strstr(out.data, "<link") ==
	    NULL, "no external asset");

	/* /metrics */
	ms = best_of(stats_metrics, &c, &out);
	ok(!sbuf_failed(&out), "metrics built");
	printf("# metrics: %zu bytes in %.2f ms\n", out.len, ms);
	ok(ms < BUDGET_MS, "metrics for %d servers in %.2f ms < %.0f ms",
	    NSERVERS, ms, BUDGET_MS);
	is_int(count(out.data, "\nshoal_server_up{"), NSERVERS + 1,
	    "shoal_server_up per server");
	is_int(count(out.data, "\nshoal_server_state{"), 5 * (NSERVERS + 1),
	    "shoal_server_state: five per server");
	is_int(count(out.data, "\nshoal_server_check_duration_seconds{"), 1,
	    "check duration only once checked");
	ok(strstr(out.data, "shoal_server_info{backend=\"small\",server=\"a\","
	    "address=\"127.0.0.1:7000\",source=\"announced\","
	    "label=\"<script>x&\\\"y'\\n\"} 1\n") != NULL,
	    "label value escaped");
	ok(strstr(out.data, "shoal_server_state{backend=\"small\",server=\"a\","
	    "state=\"down\"} 1\n") != NULL, "state gauge");
	ok(strstr(out.data, "shoal_discovery_datagrams_total{verdict=\"cap\"}"
	    " 0\n") != NULL, "verdict counters");
	is_int(count(out.data, "# TYPE "), count(out.data, "# HELP "),
	    "one HELP per TYPE");

	sbuf_free(&out);
	control_fini(&c);
	return done_testing();
}
