/*
 * stats.c - the stats listener: "/" (HTML), "/stats.json", "/metrics"
 * (Prometheus text format 0.0.4) and "/healthz" (the liveness probe),
 * served from the control loop.
 *
 * A stats client goes through three phases, each with its own deadline,
 * and is never waited for. The socket engine (ctlsock.c) accepts, reads,
 * sends, times out and lingers; this file reads the head and answers:
 *
 *   accept --> READ head (<= 8 KiB, 5 s) --> WRITE reply (10 s) --> LINGER
 *                 |  over 8 KiB: 431          fed STATS_SLICE      (drain
 *                 |  bad request line: 400/505  at a time as the   until EOF,
 *                 |    at once; 405/404 at the  socket drains      2 s) close
 *                 |    end of the head
 *                 +-- EOF, error, timeout, evicted: close
 *
 * At most STATS_CLIENTS_MAX clients exist at once; when all are taken a
 * new one evicts the oldest still in READ (a slowloris cannot hold the
 * slots), else it is closed at accept. A client holds its request head
 * and a reference to one rendered document (struct stats_doc), shared
 * with the clients that ask for the same one at about the same time, so
 * slow readers pin a bounded number of copies. The
 * documents are built from the live server table: the table is written
 * only by this thread, the per-server counters are relaxed atomics written
 * by the workers. Frontend rates (sessions/s) are sampled by a timer every
 * [stats] refresh from the frontends' totals.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "ctlsock.h"
#include "events.h"
#include "loadweight.h"
#include "log.h"
#include "net.h"
#include "scale.h"
#include "signals.h"
#include "stats.h"

#define STATS_CLIENTS_MAX	64	/* concurrent clients; more: closed */
#define STATS_REQ_MAX		8192	/* request line + headers */
#define STATS_READ_TIMEOUT	5.0	/* s, accept to the end of the head */
#define STATS_WRITE_TIMEOUT	10.0	/* s, to write the whole reply */
#define STATS_LINGER_TIMEOUT	2.0	/* s, draining after the reply */
#define STATS_LINGER_MAX	65536	/* bytes drained before giving up */
#define STATS_OUT_HIGH		65536	/* reply bytes queued per client */
#define STATS_JSON_EVENTS	100	/* timeline events in /stats.json */
#define STATS_HTML_EVENTS	30	/* ... and on the page */
#define STATS_SLICE		16384	/* body bytes queued at a time */
#define STATS_SHARE_S		1.0	/* a document younger is shared */
#define STATS_DOCS_PER_PATH	2	/* then the newest is shared anyway */
#define STATS_TRIM_MIN		(1 << 20) /* freeing this much: trim */
#define STATS_BACKLOG		128

enum sc_phase {
	SC_READ,		/* reading the request head */
	SC_WRITE,		/* feeding the reply to the engine */
};

/* What a request asks for: one of the documents. */
enum stats_path {
	SP_HTML,		/* "/" */
	SP_JSON,		/* "/stats.json" */
	SP_METRICS,		/* "/metrics" */
	SP_NONE,		/* an error reply, never shared */
};

/*
 * A rendered reply body, shared by the clients that send it: a slow
 * reader pins a reference, not a copy. Freed with its last client.
 */
struct stats_doc {
	int			 refs;
	enum stats_path		 path;
	ev_tstamp		 made;		/* ev_now() when rendered */
	struct sbuf		 body;
	LIST_ENTRY(stats_doc)	 entry;		/* S.docs, newest first */
};

/* A stats client's own state (the engine's client has the rest). */
struct stats_client {
	enum sc_phase		 phase;
	size_t			 scanned;	/* head searched up to here */
	struct stats_doc	*doc;		/* the reply body, or NULL */
	size_t			 bodylen;	/* body to send (HEAD: 0) */
	size_t			 bodyoff;	/* body queued so far */
};

/* Clients a frontend refused before touching a server, by reason
 * (clientid.h): the reason's name in JSON and metrics, its code. */
#define NREFUSALS	(sizeof(refusals) / sizeof(refusals[0]))

static const struct refusal {
	const char	*name;
	const char	*term;
	size_t		 off;
} refusals[] = {
	{ "acl", "PA", offsetof(struct frontend, refused_acl) },
	{ "proxy_from", "PF", offsetof(struct frontend, refused_proxy_from) },
	{ "proxy_header", "CP", offsetof(struct frontend, refused_proxy_bad) },
	{ "proxy_timeout", "cP",
	  offsetof(struct frontend, refused_proxy_timeout) },
	{ "conn_per_source", "PL",
	  offsetof(struct frontend, refused_conn_source) },
	{ "rate_per_source", "PR",
	  offsetof(struct frontend, refused_rate_source) },
};

/* Where ClientHello prereads (route = ...) sent sessions. */
static const struct refusal prereads[] = {
	{ "routed", "", offsetof(struct frontend, sni_routed) },
	{ "unmatched", "", offsetof(struct frontend, sni_unmatched) },
	{ "no_sni", "", offsetof(struct frontend, sni_missing) },
	{ "not_tls", "", offsetof(struct frontend, preread_not_tls) },
	{ "timeout", "", offsetof(struct frontend, preread_timeout) },
};

#define NPREREADS	(sizeof(prereads) / sizeof(prereads[0]))

static uint64_t
refused(struct frontend *fe, const struct refusal *r)
{
	return atomic_load_explicit((_Atomic uint64_t *)(void *)
	    ((char *)fe + r->off), memory_order_relaxed);
}

/* The refused cell: the total, and each reason with its code. */
static void
html_refused(struct sbuf *b, struct frontend *fe)
{
	uint64_t	total = 0;
	bool		first = true;

	for (size_t k = 0; k < NREFUSALS; k++)
		total += refused(fe, &refusals[k]);
	sbuf_printf(b, "<td class=n>%llu", (unsigned long long)total);
	for (size_t k = 0; k < NREFUSALS; k++) {
		uint64_t n = refused(fe, &refusals[k]);

		if (n == 0)
			continue;
		sbuf_printf(b, "%s%s %s %llu", first ? "<br><span class=dim>" :
		    ", ", refusals[k].term, refusals[k].name,
		    (unsigned long long)n);
		first = false;
	}
	sbuf_puts(b, first ? "</td>" : "</span></td>");
}

/* Sessions/s of one frontend over the last sampling period. */
struct stats_rate {
	const struct frontend	*fe;		/* the frontend sampled */
	uint64_t		 prev;		/* total at the last sample */
	double			 rate;
	bool			 seen;		/* still listed at this tick */
};

static struct {
	struct control		*c;		/* NULL before stats_start() */
	struct ctlsock		 cs;		/* listener and clients */
	struct ctlsock_listener	*l;		/* NULL: not listening */
	uint32_t		 refresh_ms;	/* page refresh, rate period */
	ev_timer		 rate_timer;
	ev_tstamp		 rate_last;	/* last rate sample */
	struct stats_rate	*rates;		/* [nrates] */
	size_t			 nrates;
	LIST_HEAD(, stats_doc)	 docs;		/* shared reply bodies */
} S;

/* ---- small formatting helpers ------------------------------------------ */

static uint64_t
ld64(_Atomic uint64_t *v)
{
	return atomic_load_explicit(v, memory_order_relaxed);
}

/* TLS handshakes (tls.h): JSON "tls":{...} or null when off. */
static void
json_tls(struct sbuf *b, struct tls_counters *t, bool on)
{
	uint64_t ok = ld64(&t->ok), res = ld64(&t->resumed);

	if (!on) {
		sbuf_puts(b, ",\"tls\":null");
		return;
	}
	sbuf_printf(b, ",\"tls\":{\"handshakes\":%llu,\"resumed\":%llu,"
	    "\"resumption_rate\":%.4f,\"versions\":{\"1.2\":%llu,\"1.3\":"
	    "%llu},\"ktls\":%llu,\"failures\":{", (unsigned long long)ok,
	    (unsigned long long)res, ok > 0 ? (double)res / (double)ok : 0.0,
	    (unsigned long long)ld64(&t->v12), (unsigned long long)ld64(&t->v13),
	    (unsigned long long)ld64(&t->ktls));
	for (int k = 0; k < TLS_FAIL_MAX; k++)
		sbuf_printf(b, "%s\"%s\":%llu", k ? "," : "", tls_fail_name(k),
		    (unsigned long long)ld64(&t->fail[k]));
	sbuf_puts(b, "}}");
}

/* TLS handshakes as a cell: total, resumed share, versions, failures. */
static void
html_tls(struct sbuf *b, struct tls_counters *t, bool on)
{
	uint64_t	 ok = ld64(&t->ok), res = ld64(&t->resumed);
	bool		 first = true;

	if (!on) {
		sbuf_puts(b, "<td class=dim>off</td>");
		return;
	}
	sbuf_printf(b, "<td class=n>%llu<br><span class=dim>%.0f%% resumed"
	    " &middot; 1.3 %llu &middot; 1.2 %llu", (unsigned long long)ok,
	    ok > 0 ? 100.0 * (double)res / (double)ok : 0.0,
	    (unsigned long long)ld64(&t->v13), (unsigned long long)ld64(&t->v12));
	for (int k = 0; k < TLS_FAIL_MAX; k++) {
		uint64_t n = ld64(&t->fail[k]);

		if (n == 0)
			continue;
		sbuf_printf(b, "%s%s %llu", first ? "<br>failed: " : ", ",
		    tls_fail_name(k), (unsigned long long)n);
		first = false;
	}
	sbuf_puts(b, "</span></td>");
}

/* TLS metric families for frontends (fe) or backends (be). */
static void
prom_tls(struct sbuf *b, const char *kind, const char *name,
    struct tls_counters *t)
{
	sbuf_printf(b, "shoal_%s_tls_handshakes_total{%s=\"", kind, kind);
	sbuf_prom_label(b, name);
	sbuf_printf(b, "\"} %llu\n", (unsigned long long)ld64(&t->ok));
	sbuf_printf(b, "shoal_%s_tls_resumed_total{%s=\"", kind, kind);
	sbuf_prom_label(b, name);
	sbuf_printf(b, "\"} %llu\n", (unsigned long long)ld64(&t->resumed));
	sbuf_printf(b, "shoal_%s_tls_ktls_total{%s=\"", kind, kind);
	sbuf_prom_label(b, name);
	sbuf_printf(b, "\"} %llu\n", (unsigned long long)ld64(&t->ktls));
	for (int v = 0; v < 2; v++) {
		sbuf_printf(b, "shoal_%s_tls_version_total{%s=\"", kind, kind);
		sbuf_prom_label(b, name);
		sbuf_printf(b, "\",version=\"%s\"} %llu\n", v ? "1.3" : "1.2",
		    (unsigned long long)ld64(v ? &t->v13 : &t->v12));
	}
	for (int k = 0; k < TLS_FAIL_MAX; k++) {
		sbuf_printf(b, "shoal_%s_tls_failures_total{%s=\"", kind, kind);
		sbuf_prom_label(b, name);
		sbuf_printf(b, "\",reason=\"%s\"} %llu\n", tls_fail_name(k),
		    (unsigned long long)ld64(&t->fail[k]));
	}
}


static uint32_t
ld32(_Atomic uint32_t *v)
{
	return atomic_load_explicit(v, memory_order_relaxed);
}

static int
ldint(_Atomic int *v)
{
	return atomic_load_explicit(v, memory_order_relaxed);
}

/* "1.5 MiB"; exact below 1 KiB. */
static void
put_bytes(struct sbuf *b, uint64_t n)
{
	static const char *const units[] = { "KiB", "MiB", "GiB", "TiB",
	    "PiB", "EiB" };
	double	 v = (double)n;
	size_t	 u = 0;

	if (n < 1024) {
		sbuf_printf(b, "%llu B", (unsigned long long)n);
		return;
	}
	v /= 1024;
	while (v >= 1024 && u + 1 < sizeof(units) / sizeof(units[0])) {
		v /= 1024;
		u++;
	}
	sbuf_printf(b, "%.1f %s", v, units[u]);
}

/* "42s", "3m05s", "2h07m", "4d03h". */
static void
put_age(struct sbuf *b, double s)
{
	unsigned long t = s > 0 ? (unsigned long)s : 0;

	if (t < 60)
		sbuf_printf(b, "%lus", t);
	else if (t < 3600)
		sbuf_printf(b, "%lum%02lus", t / 60, t % 60);
	else if (t < 86400)
		sbuf_printf(b, "%luh%02lum", t / 3600, t % 3600 / 60);
	else
		sbuf_printf(b, "%lud%02luh", t / 86400, t % 86400 / 3600);
}

/* A duration in ms: "0.4 ms", "12 ms", "1.20 s". */
static void
put_ms(struct sbuf *b, double ms)
{
	if (ms < 10)
		sbuf_printf(b, "%.1f ms", ms);
	else if (ms < 1000)
		sbuf_printf(b, "%.0f ms", ms);
	else
		sbuf_printf(b, "%.2f s", ms / 1000);
}

/* A recent window's p95 as put_ms, or a dim dash without data; the title
 * carries p50/p95/p99 and the count. */
static void
put_p95(struct sbuf *b, const char *what, const struct hist_counts *c)
{
	double p50 = hist_quantile(c, 0.50), p95 = hist_quantile(c, 0.95);
	double p99 = hist_quantile(c, 0.99);

	if (p95 < 0) {
		sbuf_printf(b, "<span class=dim title=\"%s: no data in the last"
		    " minute\">-</span>", what);
		return;
	}
	sbuf_printf(b, "<span title=\"%s, last minute: p50 %.3f ms, p95 %.3f"
	    " ms, p99 %.3f ms (%llu)\">", what, p50 / 1000, p95 / 1000,
	    p99 / 1000, (unsigned long long)c->count);
	put_ms(b, p95 / 1000);
	sbuf_puts(b, "</span>");
}

/* ---- the data, read once per server ------------------------------------ */

/* What every document shows of one server. */
struct srv_view {
	const struct server	*s;
	const char		*state;		/* summary state */
	int			 weight;
	double			 eff_weight;	/* in weight units; <0: not eligible */
	int			 maxconn;
	uint32_t		 cur;
	uint64_t		 total;
	uint64_t		 bytes_in;	/* client to server */
	uint64_t		 bytes_out;	/* server to client */
	uint64_t		 connect_fail;
	double			 last_change_s;	/* seconds since */
	double			 check_age_s;	/* since last check, <0 never */
};

static void
srv_view(struct server *s, double now, struct srv_view *v)
{
	v->s = s;
	v->state = server_state_name(s);
	v->weight = ldint(&s->weight);
	v->eff_weight = s->elig_since == 0 ? -1 :
	    (double)ld32(&s->eff_weight) / LOADWEIGHT_SCALE;
	v->maxconn = ldint(&s->maxconn);
	v->cur = ld32(&s->cur);
	v->total = ld64(&s->total);
	v->bytes_in = ld64(&s->bytes_in);
	v->bytes_out = ld64(&s->bytes_out);
	v->connect_fail = ld64(&s->connect_fail);
	v->last_change_s = now - s->last_change;
	if (v->last_change_s < 0)
		v->last_change_s = 0;
	if (s->last_check > 0) {
		v->check_age_s = now - s->last_check;
		if (v->check_age_s < 0)
			v->check_age_s = 0;
	} else
		v->check_age_s = -1;
}

/* Servers in the table whose summary state is "up". */
static size_t
backend_up(struct backend *be)
{
	struct server	*s;
	size_t		 n = 0;

	TAILQ_FOREACH(s, &be->servers, entry)
		if (strcmp(server_state_name(s), "up") == 0)
			n++;
	return n;
}

static double
frontend_rate(const struct frontend *fe)
{
	for (size_t i = 0; i < S.nrates; i++)
		if (S.rates[i].fe == fe)
			return S.rates[i].rate;
	return 0;
}

static const char *
config_name(struct control *c)
{
	return c->conf_path != NULL ? c->conf_path : "(default)";
}

/* ---- /stats.json ------------------------------------------------------- */

/* A signal's recent window as {"count":N,"p50":ms,"p95":ms,"p99":ms}
 * (percentiles null without data). */
static void
json_quantiles(struct sbuf *b, const char *name, const struct hist_counts *c)
{
	static const double qs[] = { 0.50, 0.95, 0.99 };
	static const char *const qn[] = { "p50", "p95", "p99" };

	sbuf_printf(b, "\"%s\":{\"count\":%llu", name,
	    (unsigned long long)c->count);
	for (int i = 0; i < 3; i++) {
		double us = hist_quantile(c, qs[i]);

		if (us < 0)
			sbuf_printf(b, ",\"%s\":null", qn[i]);
		else
			sbuf_printf(b, ",\"%s\":%.3f", qn[i], us / 1000.0);
	}
	sbuf_puts(b, "}");
}

/* ,"latency":{connect, ttfb, session[, queue]}: a server's or a
 * backend's recent window (the last minute). */
static void
json_latency(struct sbuf *b, const struct server *s, const struct backend *be)
{
	struct hist_counts c;

	sbuf_puts(b, ",\"latency\":{");
	for (int k = 0; k < LAT_MAX; k++) {
		if (s != NULL)
			signals_server_recent(s, k, &c);
		else
			signals_backend_recent(be, k, &c);
		if (k)
			sbuf_puts(b, ",");
		json_quantiles(b, signals_name(k), &c);
	}
	if (s == NULL) {
		signals_queue_recent(be, &c);
		sbuf_puts(b, ",");
		json_quantiles(b, "queue", &c);
	}
	sbuf_puts(b, "}");
}

static void
json_server(struct sbuf *b, const struct srv_view *v)
{
	const struct server *s = v->s;

	sbuf_puts(b, "{\"name\":");
	sbuf_json_str(b, s->name);
	sbuf_puts(b, ",\"address\":");
	sbuf_json_str(b, s->addrstr);
	sbuf_printf(b, ",\"source\":\"%s\",\"label\":",
	    server_source_name(s->source));
	sbuf_json_str(b, s->label);
	sbuf_printf(b, ",\"state\":\"%s\",\"admin\":\"%s\",\"health\":\"%s\""
	    ",\"weight\":%d,\"maxconn\":%d,\"backup\":%s"
	    ",\"sessions_active\":%u,\"sessions_total\":%llu"
	    ",\"bytes_in\":%llu,\"bytes_out\":%llu,\"connect_failures\":%llu"
	    ",\"check\":{\"result\":",
	    v->state, server_admin_name(s->admin), server_health_name(s->health),
	    v->weight, v->maxconn, s->backup ? "true" : "false",
	    v->cur, (unsigned long long)v->total,
	    (unsigned long long)v->bytes_in, (unsigned long long)v->bytes_out,
	    (unsigned long long)v->connect_fail);
	sbuf_json_str(b, v->check_age_s < 0 ? "" : s->check_result);
	sbuf_puts(b, ",\"detail\":");
	sbuf_json_str(b, v->check_age_s < 0 ? "" : s->check_detail);
	sbuf_printf(b, ",\"duration_ms\":%.3f,\"age_s\":",
	    v->check_age_s < 0 ? 0.0 : s->check_duration_ms);
	if (v->check_age_s < 0)
		sbuf_puts(b, "null");
	else
		sbuf_printf(b, "%.3f", v->check_age_s);
	sbuf_printf(b, "},\"last_change_s\":%.3f", v->last_change_s);
	switch (atomic_load_explicit(&s->fault, memory_order_relaxed)) {
	case FAULT_NONE:
		sbuf_puts(b, ",\"fault\":null");
		break;
	case FAULT_DELAY:
		sbuf_printf(b, ",\"fault\":{\"kind\":\"delay\",\"delay_ms\":"
		    "%u}", (unsigned)atomic_load_explicit(&s->fault_delay_ms, memory_order_relaxed));
		break;
	default:
		sbuf_printf(b, ",\"fault\":{\"kind\":\"%s\"}",
		    server_fault_name(atomic_load(&s->fault)));
	}
	if (v->eff_weight < 0)
		sbuf_puts(b, ",\"effective_weight\":null");
	else
		sbuf_printf(b, ",\"effective_weight\":%.4g", v->eff_weight);
	if (!s->load_have) {
		sbuf_puts(b, ",\"load\":null");
	} else {
		sbuf_printf(b, ",\"load\":{\"value\":%d,\"age_s\":%.3f"
		    ",\"interval_ms\":%u,\"connections\":", s->load,
		    ev_time() - s->load_at, s->load_interval_ms);
		if (s->load_conns < 0)
			sbuf_puts(b, "null}");
		else
			sbuf_printf(b, "%lld}", (long long)s->load_conns);
	}
	json_latency(b, s, NULL);
	sbuf_puts(b, "}");
}

/* One [backend] resolve watch, with a leading comma. */
static void
json_dns(const struct dns_watch_info *w, void *arg)
{
	struct sbuf *b = arg;

	sbuf_puts(b, ",\n{\"backend\":");
	sbuf_json_str(b, w->backend);
	sbuf_puts(b, ",\"name\":");
	sbuf_json_str(b, w->name);
	sbuf_printf(b, ",\"servers\":%zu,\"queries\":%llu,\"answers\":%llu,"
	    "\"empty\":%llu,\"failures\":%llu,\"ttl\":%u,\"error\":",
	    w->servers, (unsigned long long)w->queries,
	    (unsigned long long)w->answers, (unsigned long long)w->empty,
	    (unsigned long long)w->failures, w->ttl);
	sbuf_json_str(b, w->error);
	sbuf_puts(b, "}");
}

static void
json_announcement(const struct discovery_entry_info *e, void *arg)
{
	struct sbuf	*b = arg;

	if (strcmp(e->state, "gone") == 0)
		return;
	/* The caller strips the comma before the first entry. */
	sbuf_puts(b, ",\n{\"backend\":");
	sbuf_json_str(b, e->backend);
	sbuf_puts(b, ",\"name\":");
	sbuf_json_str(b, e->name);
	sbuf_puts(b, ",\"label\":");
	sbuf_json_str(b, e->label);
	sbuf_printf(b, ",\"state\":\"%s\",\"age_s\":%.3f,\"expires_s\":%.3f}",
	    e->state, e->age_s, e->expires_s);
}

/* A number or null (NaN). */
static void
json_num(struct sbuf *b, double v)
{
	if (isnan(v))
		sbuf_puts(b, "null");
	else
		sbuf_printf(b, "%.6g", v);
}

/* ,"scale":{...}: the backend's conditions, what they see and want, and
 * its hook; "scale":null without conditions. */
static void
json_scale(struct sbuf *b, struct backend *be)
{
	const struct scale_state	*st = be->scale;
	double				 v[SCALE_NSIGNALS];
	char				 text[SCALEEXPR_TEXT_MAX];
	double				 now = ev_time();
	uint64_t			 now_ms = (uint64_t)(now * 1000);

	if (!be->conf.has_scale_up && !be->conf.has_scale_down) {
		sbuf_puts(b, ",\"scale\":null");
		return;
	}
	sbuf_puts(b, ",\"scale\":{");
	for (int a = 0; a < SCALE_ACT_MAX; a++) {
		const struct scaleexpr *e = a == SCALE_ACT_UP ?
		    &be->conf.scale_up : &be->conf.scale_down;
		bool has = a == SCALE_ACT_UP ? be->conf.has_scale_up :
		    be->conf.has_scale_down;

		sbuf_printf(b, "%s\"%s\":", a ? "," : "",
		    scale_action_name(a));
		if (!has) {
			sbuf_puts(b, "null");
			continue;
		}
		scaleexpr_format(e, text, sizeof(text));
		sbuf_puts(b, "{\"condition\":");
		sbuf_json_str(b, text);
		sbuf_printf(b, ",\"holding_s\":%.1f,\"runs\":%llu,\"failed\":"
		    "%llu}", st ? scaleexpr_for_held_ms(&st->hold[a], now_ms) /
		    1000.0 : 0.0, st ? (unsigned long long)st->runs[a] : 0ULL,
		    st ? (unsigned long long)st->failed[a] : 0ULL);
	}
	sbuf_printf(b, ",\"wanted\":%d,\"cooldown_s\":%.1f,\"hook\":",
	    st ? st->wanted : 0, st && st->cooldown_until > now ?
	    st->cooldown_until - now : 0.0);
	if (be->conf.scale_hook[0] == '\0')
		sbuf_puts(b, "null");
	else {
		sbuf_json_str(b, be->conf.scale_hook);
	}
	sbuf_printf(b, ",\"running\":%s,\"last\":",
	    st && st->pid != 0 ? "true" : "false");
	if (st == NULL || !st->have_last)
		sbuf_puts(b, "null");
	else
		sbuf_printf(b, "{\"action\":\"%s\",\"status\":%d,\"ago_s\":"
		    "%.1f,\"duration_s\":%.1f}",
		    scale_action_name(st->last_action), st->last_status,
		    now - st->last_end, st->last_duration);
	scale_signals(be, v);
	sbuf_puts(b, ",\"signals\":{");
	for (int i = 0; i < SCALE_NSIGNALS; i++) {
		sbuf_printf(b, "%s\"%s\":", i ? "," : "",
		    scaleexpr_signal_name(i));
		json_num(b, v[i]);
	}
	sbuf_puts(b, "}}");
}

/* The timeline's last n events, oldest first, as a JSON array. */
static void
json_events(struct sbuf *b, size_t n)
{
	size_t total = events_count(), from = total > n ? total - n : 0;

	sbuf_puts(b, "[");
	for (size_t i = from; i < total; i++) {
		const struct event *e = events_get(i);

		sbuf_printf(b, "%s\n{\"seq\":%llu,\"at\":%.3f,\"kind\":\"%s\","
		    "\"backend\":", i > from ? "," : "",
		    (unsigned long long)e->seq, e->at,
		    events_kind_name(e->kind));
		sbuf_json_str(b, e->backend);
		sbuf_puts(b, ",\"server\":");
		sbuf_json_str(b, e->server);
		sbuf_puts(b, ",\"text\":");
		sbuf_json_str(b, e->text);
		sbuf_puts(b, "}");
	}
	sbuf_puts(b, "]");
}

void
stats_json(struct control *c, struct sbuf *b)
{
	const struct discovery_view *dv = c->discovery;
	uint64_t	 dc[DISCOVERY_VERDICTS_MAX];
	struct backend	*be;
	double		 now = ev_time();
	size_t		 mark;

	sbuf_printf(b, "{\"info\":{\"version\":\"%s\",\"pid\":%ld"
	    ",\"uptime_s\":%.3f,\"threads\":%zu,\"sessions_active\":%u"
	    ",\"sessions_total\":%llu,\"maxconn\":%d,\"config\":",
	    SHOAL_VERSION, (long)getpid(), now - c->started, c->nworkers,
	    ld32(&proxy_limits.cur),
	    (unsigned long long)ld64(&proxy_limits.total),
	    ldint(&proxy_limits.maxconn));
	sbuf_json_str(b, config_name(c));
	sbuf_printf(b, ",\"reloads\":%u,\"reload_error\":", c->reloads);
	sbuf_json_str(b, c->reload_error);
	sbuf_printf(b, ",\"stopping\":%s,\"refresh_s\":%.3f},\n",
	    c->stopping ? "true" : "false",
	    (S.refresh_ms ? S.refresh_ms : 5000) / 1000.0);

	sbuf_puts(b, "\"frontends\":[");
	for (size_t i = 0; i < c->nfrontends; i++) {
		struct frontend	*fe = c->frontends[i];
		struct backend	*fb = atomic_load(&fe->backend);

		sbuf_puts(b, i ? ",\n{\"name\":" : "\n{\"name\":");
		sbuf_json_str(b, fe->name);
		sbuf_puts(b, ",\"binds\":[");
		for (size_t j = 0; j < fe->nbinds; j++) {
			char abuf[NET_ADDRSTRLEN];

			if (j)
				sbuf_puts(b, ",");
			sbuf_json_str(b, net_addr_str(
			    (struct sockaddr *)&fe->binds[j].ss, abuf,
			    sizeof(abuf)));
		}
		sbuf_puts(b, "],\"backend\":");
		sbuf_json_str(b, fb != NULL ? fb->name : "");
		sbuf_printf(b, ",\"sessions_active\":%u,\"sessions_total\":%llu"
		    ",\"rate\":%.3f,\"maxconn\":%d,\"refused\":{", ld32(&fe->cur),
		    (unsigned long long)ld64(&fe->total), frontend_rate(fe),
		    ldint(&fe->maxconn));
		for (size_t k = 0; k < NREFUSALS; k++)
			sbuf_printf(b, "%s\"%s\":%llu", k ? "," : "",
			    refusals[k].name,
			    (unsigned long long)refused(fe, &refusals[k]));
		sbuf_puts(b, "},\"preread\":{");
		for (size_t k = 0; k < NPREREADS; k++)
			sbuf_printf(b, "%s\"%s\":%llu", k ? "," : "",
			    prereads[k].name,
			    (unsigned long long)refused(fe, &prereads[k]));
		sbuf_puts(b, "}");
		json_tls(b, &fe->tls_stats, atomic_load(&fe->tls) != NULL);
		sbuf_puts(b, "}");
	}
	sbuf_puts(b, "],\n\"backends\":[");
	TAILQ_FOREACH(be, &c->backends, entry) {
		struct server	*s;
		size_t		 up = 0;
		uint32_t	 cur = 0;
		uint64_t	 total = 0;

		sbuf_puts(b, be == TAILQ_FIRST(&c->backends) ? "\n{\"name\":" :
		    ",\n{\"name\":");
		sbuf_json_str(b, be->name);
		sbuf_printf(b, ",\"balance\":\"%s\",\"check_type\":\"%s\""
		    ",\"discovery\":%s,\"servers\":[",
		    conf_balance_name(be->conf.balance),
		    conf_check_name(be->conf.check),
		    be->conf.discovery ? "true" : "false");
		TAILQ_FOREACH(s, &be->servers, entry) {
			struct srv_view v;

			srv_view(s, now, &v);
			if (strcmp(v.state, "up") == 0)
				up++;
			cur += v.cur;
			total += v.total;
			sbuf_puts(b, s == TAILQ_FIRST(&be->servers) ? "\n" :
			    ",\n");
			json_server(b, &v);
		}
		sbuf_printf(b, "],\"servers_up\":%zu,\"servers_total\":%zu"
		    ",\"sessions_active\":%u,\"sessions_total\":%llu",
		    up, be->nservers, cur, (unsigned long long)total);
		json_tls(b, &be->tls_stats, atomic_load(&be->tls) != NULL);
		sbuf_printf(b, ",\"sessions_per_up_server\":%.3f",
		    up > 0 ? (double)cur / (double)up : 0.0);
		json_latency(b, NULL, be);
		json_scale(b, be);
		sbuf_printf(b, ",\"queued\":%u", atomic_load_explicit(
		    &be->queued, memory_order_relaxed));
		sbuf_puts(b, "}");
	}
	sbuf_puts(b, "],\n\"events\":");
	json_events(b, STATS_JSON_EVENTS);
	sbuf_puts(b, ",\n\"discovery\":{");
	if (dv != NULL) {
		dv->counters(dc);
		for (int i = 0; i < dv->nverdicts; i++)
			sbuf_printf(b, "%s\"%s\":%llu", i ? "," : "",
			    dv->verdict_name(i), (unsigned long long)dc[i]);
	}
	sbuf_puts(b, "},\n\"announcements\":[");
	mark = b->len;
	if (dv != NULL)
		dv->foreach(json_announcement, b);
	if (b->len > mark && !sbuf_failed(b)) {
		/* Drop the leading comma of the first entry. */
		memmove(b->data + mark, b->data + mark + 1, b->len - mark);
		b->len--;
	}
	sbuf_puts(b, "],\n\"dns\":[");
	mark = b->len;
	if (c->dns != NULL)
		c->dns->foreach(json_dns, b);
	if (b->len > mark && !sbuf_failed(b)) {
		memmove(b->data + mark, b->data + mark + 1, b->len - mark);
		b->len--;
	}
	sbuf_puts(b, "]}\n");
}

/* ---- /metrics ---------------------------------------------------------- */

static void
prom_family(struct sbuf *b, const char *name, const char *type,
    const char *help)
{
	sbuf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* /metrics: one value of every watch, as one family. */
struct prom_dns_arg {
	struct sbuf	*b;
	const char	*name;
	int		 what;	/* 0-3 counters, 4 the servers gauge */
};

static void
prom_dns_one(const struct dns_watch_info *w, void *arg)
{
	const struct prom_dns_arg *a = arg;
	const uint64_t v[] = { w->queries, w->answers, w->empty, w->failures,
	    w->servers };

	sbuf_printf(a->b, "%s{backend=\"", a->name);
	sbuf_prom_label(a->b, w->backend);
	sbuf_printf(a->b, "\",name=\"");
	sbuf_prom_label(a->b, w->name);
	sbuf_printf(a->b, "\"} %llu\n", (unsigned long long)v[a->what]);
}

static void
prom_dns(struct control *c, struct sbuf *b)
{
	static const struct {
		const char	*name, *type, *help;
	} fam[] = {
		{ "shoal_dns_queries_total", "counter",
		  "[backend] resolve: DNS queries asked." },
		{ "shoal_dns_answers_total", "counter",
		  "[backend] resolve: answers with addresses." },
		{ "shoal_dns_empty_total", "counter",
		  "[backend] resolve: no such name, or no address." },
		{ "shoal_dns_failures_total", "counter",
		  "[backend] resolve: timeouts, SERVFAIL, refused or malformed "
		  "answers (the servers found before stay)." },
		{ "shoal_dns_servers", "gauge",
		  "[backend] resolve: servers found in DNS in the table now." },
	};
	struct prom_dns_arg a = { .b = b };

	for (size_t i = 0; i < sizeof(fam) / sizeof(fam[0]); i++) {
		prom_family(b, fam[i].name, fam[i].type, fam[i].help);
		a.name = fam[i].name;
		a.what = (int)i;
		c->dns->foreach(prom_dns_one, &a);
	}
}

static void
prom_srv_labels(struct sbuf *b, const char *name, const struct server *s)
{
	sbuf_puts(b, name);
	sbuf_puts(b, "{backend=\"");
	sbuf_prom_label(b, s->be->name);
	sbuf_puts(b, "\",server=\"");
	sbuf_prom_label(b, s->name);
	sbuf_puts(b, "\"");
}

/* Which per-server value a family shows. */
enum prom_srv {
	PS_UP,		/* 1 if the summary state is up */
	PS_WEIGHT,
	PS_CUR,
	PS_TOTAL,
	PS_IN,
	PS_OUT,
	PS_FAIL,
	PS_CHECK,	/* last check duration, s */
	PS_CHANGE,	/* seconds since the last state change */
};

/* One sample per server of family `name`: the value `what`. */
static void
prom_servers(struct control *c, struct sbuf *b, const char *name,
    const char *type, const char *help, enum prom_srv what, double now)
{
	struct backend	*be;
	struct server	*s;

	prom_family(b, name, type, help);
	TAILQ_FOREACH(be, &c->backends, entry) {
		TAILQ_FOREACH(s, &be->servers, entry) {
			struct srv_view v;

			srv_view(s, now, &v);
			if (what == PS_CHECK && v.check_age_s < 0)
				continue;	/* never checked: no sample */
			prom_srv_labels(b, name, s);
			switch (what) {
			case PS_UP:
				sbuf_printf(b, "} %d\n",
				    strcmp(v.state, "up") == 0);
				break;
			case PS_WEIGHT:
				sbuf_printf(b, "} %d\n", v.weight);
				break;
			case PS_CUR:
				sbuf_printf(b, "} %u\n", v.cur);
				break;
			case PS_TOTAL:
				sbuf_printf(b, "} %llu\n",
				    (unsigned long long)v.total);
				break;
			case PS_IN:
				sbuf_printf(b, "} %llu\n",
				    (unsigned long long)v.bytes_in);
				break;
			case PS_OUT:
				sbuf_printf(b, "} %llu\n",
				    (unsigned long long)v.bytes_out);
				break;
			case PS_FAIL:
				sbuf_printf(b, "} %llu\n",
				    (unsigned long long)v.connect_fail);
				break;
			case PS_CHECK:
				sbuf_printf(b, "} %.6f\n",
				    s->check_duration_ms / 1000.0);
				break;
			case PS_CHANGE:
				sbuf_printf(b, "} %.3f\n", v.last_change_s);
				break;
			}
		}
	}
}

/* The latency histograms: per server connect, ttfb and session (since
 * start), per backend the queue wait. */
static void
prom_latency(struct sbuf *b, struct control *c)
{
	static const char *const help[LAT_MAX] = {
		"Connect time to the server (TCP, and TLS with tls = yes), "
		"seconds.",
		"Time from connected to the server's first byte, seconds.",
		"Session duration from connected to the end, seconds.",
	};
	struct backend		*be;
	struct server		*s;
	struct hist_counts	 h;
	struct sbuf		 l;
	char			 name[64];

	sbuf_init(&l);
	for (int k = 0; k < LAT_MAX; k++) {
		snprintf(name, sizeof(name), "shoal_server_%s_seconds",
		    signals_name(k));
		prom_family(b, name, "histogram", help[k]);
		TAILQ_FOREACH(be, &c->backends, entry)
			TAILQ_FOREACH(s, &be->servers, entry) {
				hist_read(&s->lat[k], &h);
				if (h.count == 0)
					continue;
				sbuf_reset(&l);
				sbuf_puts(&l, "backend=\"");
				sbuf_prom_label(&l, be->name);
				sbuf_puts(&l, "\",server=\"");
				sbuf_prom_label(&l, s->name);
				sbuf_puts(&l, "\"");
				if (!l.failed)
					hist_prom(b, name, l.data, &h);
			}
	}
	prom_family(b, "shoal_backend_queue_seconds", "histogram",
	    "Wait from wanting a server to the first connect, seconds.");
	TAILQ_FOREACH(be, &c->backends, entry) {
		hist_read(&be->queue, &h);
		sbuf_reset(&l);
		sbuf_puts(&l, "backend=\"");
		sbuf_prom_label(&l, be->name);
		sbuf_puts(&l, "\"");
		if (!l.failed)
			hist_prom(b, "shoal_backend_queue_seconds", l.data,
			    &h);
	}
	sbuf_free(&l);
}


void
stats_metrics(struct control *c, struct sbuf *b)
{
	static const char *const states[] = { "up", "down", "checking",
	    "drain", "maint" };
	const struct discovery_view *dv = c->discovery;
	uint64_t	 dc[DISCOVERY_VERDICTS_MAX];
	struct backend	*be;
	struct server	*s;
	double		 now = ev_time();

	prom_family(b, "shoal_info", "gauge",
	    "Constant 1, labelled with the version.");
	sbuf_printf(b, "shoal_info{version=\"%s\"} 1\n", SHOAL_VERSION);
	prom_family(b, "shoal_start_time_seconds", "gauge",
	    "When the process started, seconds since the Unix epoch.");
	sbuf_printf(b, "shoal_start_time_seconds %.3f\n", c->started);
	prom_family(b, "shoal_uptime_seconds", "gauge",
	    "Seconds since the process started.");
	sbuf_printf(b, "shoal_uptime_seconds %.3f\n", now - c->started);
	prom_family(b, "shoal_reloads_total", "counter",
	    "Successful configuration reloads.");
	sbuf_printf(b, "shoal_reloads_total %u\n", c->reloads);
	prom_family(b, "shoal_stats_clients_refused_total", "counter",
	    "Stats connections closed at accept: every slot was answering.");
	sbuf_printf(b, "shoal_stats_clients_refused_total %llu\n",
	    (unsigned long long)S.cs.refused);
	prom_family(b, "shoal_stats_clients_evicted_total", "counter",
	    "Stats connections closed before their request head was complete, "
	    "to make room for a new one.");
	sbuf_printf(b, "shoal_stats_clients_evicted_total %llu\n",
	    (unsigned long long)S.cs.evicted);
	prom_family(b, "shoal_workers", "gauge", "Worker threads.");
	sbuf_printf(b, "shoal_workers %zu\n", c->nworkers);
	prom_family(b, "shoal_maxconn", "gauge",
	    "Process-wide cap on client sessions.");
	sbuf_printf(b, "shoal_maxconn %d\n", ldint(&proxy_limits.maxconn));
	prom_family(b, "shoal_sessions_active", "gauge",
	    "Client sessions open now, all frontends.");
	sbuf_printf(b, "shoal_sessions_active %u\n", ld32(&proxy_limits.cur));
	prom_family(b, "shoal_sessions_total", "counter",
	    "Client sessions accepted, all frontends.");
	sbuf_printf(b, "shoal_sessions_total %llu\n",
	    (unsigned long long)ld64(&proxy_limits.total));

	prom_family(b, "shoal_frontend_sessions_active", "gauge",
	    "Client sessions open now on the frontend.");
	for (size_t i = 0; i < c->nfrontends; i++) {
		sbuf_puts(b, "shoal_frontend_sessions_active{frontend=\"");
		sbuf_prom_label(b, c->frontends[i]->name);
		sbuf_printf(b, "\"} %u\n", ld32(&c->frontends[i]->cur));
	}
	prom_family(b, "shoal_frontend_sessions_total", "counter",
	    "Client sessions accepted by the frontend.");
	for (size_t i = 0; i < c->nfrontends; i++) {
		sbuf_puts(b, "shoal_frontend_sessions_total{frontend=\"");
		sbuf_prom_label(b, c->frontends[i]->name);
		sbuf_printf(b, "\"} %llu\n",
		    (unsigned long long)ld64(&c->frontends[i]->total));
	}
	prom_family(b, "shoal_frontend_session_rate", "gauge",
	    "Sessions per second over the last [stats] refresh period.");
	for (size_t i = 0; i < c->nfrontends; i++) {
		sbuf_puts(b, "shoal_frontend_session_rate{frontend=\"");
		sbuf_prom_label(b, c->frontends[i]->name);
		sbuf_printf(b, "\"} %.3f\n", frontend_rate(c->frontends[i]));
	}
	prom_family(b, "shoal_frontend_preread_total", "counter",
	    "Sessions routed by the TLS ClientHello (route = ...), by result: "
	    "routed, or to the default backend because unmatched, no_sni, "
	    "not_tls or timeout.");
	for (size_t i = 0; i < c->nfrontends; i++)
		for (size_t k = 0; k < NPREREADS; k++) {
			sbuf_puts(b, "shoal_frontend_preread_total{frontend=\"");
			sbuf_prom_label(b, c->frontends[i]->name);
			sbuf_printf(b, "\",result=\"%s\"} %llu\n",
			    prereads[k].name, (unsigned long long)refused(
			    c->frontends[i], &prereads[k]));
		}
	prom_family(b, "shoal_frontend_tls_handshakes_total", "counter",
	    "TLS handshakes completed with clients (tls = yes frontends); "
	    "also _resumed_total, _ktls_total, _version_total{version}, "
	    "_failures_total{reason}.");
	for (size_t i = 0; i < c->nfrontends; i++)
		if (atomic_load(&c->frontends[i]->tls) != NULL)
			prom_tls(b, "frontend", c->frontends[i]->name,
			    &c->frontends[i]->tls_stats);
	prom_family(b, "shoal_backend_tls_handshakes_total", "counter",
	    "TLS handshakes completed with servers (tls = yes backends); "
	    "also _resumed_total, _ktls_total, _version_total{version}, "
	    "_failures_total{reason}.");
	TAILQ_FOREACH(be, &c->backends, entry)
		if (atomic_load(&be->tls) != NULL)
			prom_tls(b, "backend", be->name, &be->tls_stats);
	prom_family(b, "shoal_frontend_refused_total", "counter",
	    "Clients refused before any server was touched, by reason (acl, "
	    "proxy_from, proxy_header, proxy_timeout, conn_per_source, "
	    "rate_per_source).");
	for (size_t i = 0; i < c->nfrontends; i++)
		for (size_t k = 0; k < NREFUSALS; k++) {
			sbuf_puts(b, "shoal_frontend_refused_total{frontend=\"");
			sbuf_prom_label(b, c->frontends[i]->name);
			sbuf_printf(b, "\",reason=\"%s\"} %llu\n",
			    refusals[k].name, (unsigned long long)refused(
			    c->frontends[i], &refusals[k]));
		}

	prom_latency(b, c);
	prom_family(b, "shoal_backend_servers", "gauge",
	    "Servers in the backend's table.");
	TAILQ_FOREACH(be, &c->backends, entry) {
		sbuf_puts(b, "shoal_backend_servers{backend=\"");
		sbuf_prom_label(b, be->name);
		sbuf_printf(b, "\"} %zu\n", be->nservers);
	}
	prom_family(b, "shoal_backend_servers_up", "gauge",
	    "Servers of the backend whose state is up.");
	TAILQ_FOREACH(be, &c->backends, entry) {
		sbuf_puts(b, "shoal_backend_servers_up{backend=\"");
		sbuf_prom_label(b, be->name);
		sbuf_printf(b, "\"} %zu\n", backend_up(be));
	}

	prom_family(b, "shoal_backend_queued", "gauge",
	    "Sessions waiting for a first server now (timeout_queue).");
	TAILQ_FOREACH(be, &c->backends, entry) {
		sbuf_puts(b, "shoal_backend_queued{backend=\"");
		sbuf_prom_label(b, be->name);
		sbuf_printf(b, "\"} %u\n", atomic_load_explicit(&be->queued,
		    memory_order_relaxed));
	}
	prom_family(b, "shoal_backend_scale_wanted", "gauge",
	    "+1 while scale_up has held long enough, -1 while scale_down "
	    "has, else 0.");
	TAILQ_FOREACH(be, &c->backends, entry) {
		sbuf_puts(b, "shoal_backend_scale_wanted{backend=\"");
		sbuf_prom_label(b, be->name);
		sbuf_printf(b, "\"} %d\n", be->scale ? be->scale->wanted : 0);
	}
	prom_family(b, "shoal_backend_scale_hooks_total", "counter",
	    "Runs of the backend's scale_hook, by action and result.");
	TAILQ_FOREACH(be, &c->backends, entry) {
		if (be->conf.scale_hook[0] == '\0')
			continue;
		for (int a = 0; a < SCALE_ACT_MAX; a++)
			for (int ok = 1; ok >= 0; ok--) {
				uint64_t n = be->scale == NULL ? 0 : ok ?
				    be->scale->runs[a] - be->scale->failed[a] :
				    be->scale->failed[a];

				sbuf_puts(b, "shoal_backend_scale_hooks_total"
				    "{backend=\"");
				sbuf_prom_label(b, be->name);
				sbuf_printf(b, "\",action=\"%s\",result=\"%s\"}"
				    " %llu\n", scale_action_name(a), ok ? "ok" :
				    "failed", (unsigned long long)n);
			}
	}

	prom_family(b, "shoal_server_info", "gauge",
	    "Constant 1, labelled with the server's address, source and "
	    "announced label.");
	TAILQ_FOREACH(be, &c->backends, entry) {
		TAILQ_FOREACH(s, &be->servers, entry) {
			prom_srv_labels(b, "shoal_server_info", s);
			sbuf_puts(b, ",address=\"");
			sbuf_prom_label(b, s->addrstr);
			sbuf_printf(b, "\",source=\"%s\",label=\"",
			    server_source_name(s->source));
			sbuf_prom_label(b, s->label);
			sbuf_puts(b, "\"} 1\n");
		}
	}
	prom_servers(c, b, "shoal_server_up", "gauge",
	    "1 if the server's state is up, else 0.", PS_UP, now);
	prom_family(b, "shoal_server_state", "gauge",
	    "1 for the server's current state, 0 for the others.");
	TAILQ_FOREACH(be, &c->backends, entry) {
		TAILQ_FOREACH(s, &be->servers, entry) {
			const char *st = server_state_name(s);

			for (size_t i = 0; i < sizeof(states) /
			    sizeof(states[0]); i++) {
				prom_srv_labels(b, "shoal_server_state", s);
				sbuf_printf(b, ",state=\"%s\"} %d\n", states[i],
				    strcmp(st, states[i]) == 0);
			}
		}
	}
	prom_servers(c, b, "shoal_server_weight", "gauge",
	    "The server's weight (0 = never picked).", PS_WEIGHT, now);
	prom_servers(c, b, "shoal_server_sessions_active", "gauge",
	    "Sessions open now on the server.", PS_CUR, now);
	prom_servers(c, b, "shoal_server_sessions_total", "counter",
	    "Sessions ever started on the server.", PS_TOTAL, now);
	prom_servers(c, b, "shoal_server_bytes_in_total", "counter",
	    "Bytes relayed from clients to the server.", PS_IN, now);
	prom_servers(c, b, "shoal_server_bytes_out_total", "counter",
	    "Bytes relayed from the server to clients.", PS_OUT, now);
	prom_servers(c, b, "shoal_server_connect_failures_total",
	    "counter", "Failed connects to the server.", PS_FAIL, now);
	prom_servers(c, b, "shoal_server_check_duration_seconds",
	    "gauge", "How long the last health check took (absent until "
	    "the first check).", PS_CHECK, now);
	prom_servers(c, b, "shoal_server_last_change_seconds", "gauge",
	    "Seconds since the server's last state change.", PS_CHANGE, now);

	if (c->dns != NULL)
		prom_dns(c, b);
	if (dv == NULL)
		return;
	dv->counters(dc);
	prom_family(b, "shoal_discovery_datagrams_total", "counter",
	    "Discovery datagrams by receiver verdict.");
	for (int i = 0; i < dv->nverdicts; i++)
		sbuf_printf(b, "shoal_discovery_datagrams_total{verdict=\"%s\"}"
		    " %llu\n", dv->verdict_name(i),
		    (unsigned long long)dc[i]);
}

/* ---- / (HTML) ---------------------------------------------------------- */

static const char html_css[] =
	"*{box-sizing:border-box}"
	"body{margin:0;font:13px/1.4 system-ui,-apple-system,'Segoe UI',"
	"'DejaVu Sans',sans-serif;color:#1f2933;background:#eef1f5}"
	"header{background:#17324d;color:#f5f7fa;padding:10px 18px;"
	"display:flex;flex-wrap:wrap;align-items:baseline;gap:6px 22px}"
	"header h1{font-size:19px;margin:0 8px 0 0;letter-spacing:.5px}"
	"header .k{color:#9fb3c8;margin-right:4px}"
	"header .err{color:#ffb4b4}"
	"main{padding:4px 18px 14px}"
	"section{background:#fff;border:1px solid #cfd6df;border-radius:5px;"
	"margin:12px 0;overflow:hidden}"
	"h2{font-size:14px;margin:0;padding:7px 10px;background:#e3e8ef;"
	"border-bottom:1px solid #cfd6df;display:flex;gap:16px;"
	"align-items:baseline}"
	"h2 .sub{font-weight:400;color:#52606d;font-size:12.5px}"
	"h2 .cnt{margin-left:auto;font-weight:600}"
	".all .cnt{color:#2b8a3e}.some .cnt{color:#d9480f}"
	".none .cnt{color:#c92a2a}"
	"table{border-collapse:collapse;width:100%}"
	"table.srv{table-layout:fixed}"
	"table.srv td{overflow:hidden;text-overflow:ellipsis}"
	"table.auto{width:auto}table.auto th,table.auto td{min-width:84px}"
	"th,td{padding:3px 9px;text-align:left;white-space:nowrap;"
	"border-bottom:1px solid #e6eaef}"
	"th{font-weight:600;color:#52606d;background:#f7f9fb;font-size:12px;"
	"overflow:hidden;text-overflow:ellipsis}"
	".n{text-align:right;font-variant-numeric:tabular-nums}"
	"tr:last-child td{border-bottom:0}"
	"tr.state-up td{background:#eefaf0}"
	"tr.state-down td{background:#fdecec}"
	"tr.state-checking td{background:#fff7e0}"
	"tr.state-drain td{background:#e9f2fd}"
	"tr.state-maint td{background:#f1f3f5;color:#6b7785}"
	".badge{display:inline-block;min-width:68px;text-align:center;"
	"padding:1px 7px;border-radius:3px;color:#fff;font-weight:600;"
	"font-size:11.5px;text-transform:uppercase;letter-spacing:.4px}"
	".state-up .badge,.badge.state-up{background:#2b8a3e}"
	".state-down .badge,.badge.state-down{background:#c92a2a}"
	".state-checking .badge,.badge.state-checking{background:#e8890c}"
	".state-drain .badge,.badge.state-drain{background:#1c6fd1}"
	".state-maint .badge,.badge.state-maint{background:#7b8794}"
	".src{color:#52606d}.lbl{color:#1c6fd1}.eff{color:#1c6fd1}"
	".fault{background:#c92a2a;color:#fff;font-weight:700;"
	"padding:0 5px;border-radius:3px;font-size:11px}"
	".dim{color:#8a96a3}.bad{color:#c92a2a;font-weight:600}"
	".legend{margin:10px 0 0;color:#52606d}"
	".legend .badge{min-width:0;margin-right:4px}"
	"footer{padding:0 18px 16px;color:#7b8794;font-size:12px}"
	"a{color:#1c6fd1}";

static void
html_server(struct sbuf *b, const struct srv_view *v, bool checks)
{
	const struct server *s = v->s;

	sbuf_printf(b, "<tr class=\"server state-%s\" data-server=\"",
	    v->state);
	sbuf_html(b, s->be->name);
	sbuf_puts(b, "/");
	sbuf_html(b, s->name);
	sbuf_printf(b, "\" data-state=\"%s\" data-source=\"%s\"><td>",
	    v->state, server_source_name(s->source));
	sbuf_html(b, s->name);
	if (s->backup)
		sbuf_puts(b, " <span class=dim>(backup)</span>");
	{
		int f = atomic_load_explicit(&s->fault, memory_order_relaxed);

		if (f == FAULT_DELAY)
			sbuf_printf(b, " <span class=fault title=\"fault "
			    "injection: new sessions wait this long once "
			    "connected\">FAULT delay %ums</span>",
			    (unsigned)atomic_load_explicit(&s->fault_delay_ms, memory_order_relaxed));
		else if (f != FAULT_NONE)
			sbuf_printf(b, " <span class=fault title=\"fault "
			    "injection (shoalctl set server ... fault none "
			    "ends it)\">FAULT %s</span>",
			    server_fault_name((enum server_fault)f));
	}
	sbuf_puts(b, "</td><td>");
	sbuf_html(b, s->addrstr);
	sbuf_puts(b, "</td><td class=src title=\"");
	sbuf_html(b, s->label);
	sbuf_printf(b, "\">%s", server_source_name(s->source));
	if (s->label[0] != '\0') {
		sbuf_puts(b, " <span class=lbl>");
		sbuf_html(b, s->label);
		sbuf_puts(b, "</span>");
	}
	sbuf_printf(b, "</td><td><span class=badge>%s</span></td>"
	    "<td class=n>%d", v->state, v->weight);
	if (v->eff_weight >= 0 && v->eff_weight != (double)v->weight) {
		sbuf_printf(b, " <span class=eff title=\"effective weight "
		    "(slow start, reported load");
		if (s->load_have)
			sbuf_printf(b, " %d", s->load);
		sbuf_printf(b, ")\">&rarr;&nbsp;%.2f</span>", v->eff_weight);
	}
	sbuf_printf(b, "</td><td class=n>%u", v->cur);
	if (v->maxconn > 0)
		sbuf_printf(b, "<span class=dim>/%d</span>", v->maxconn);
	sbuf_printf(b, "</td><td class=n>%llu</td><td class=n title=\"%llu\">",
	    (unsigned long long)v->total, (unsigned long long)v->bytes_in);
	put_bytes(b, v->bytes_in);
	sbuf_printf(b, "</td><td class=n title=\"%llu\">",
	    (unsigned long long)v->bytes_out);
	put_bytes(b, v->bytes_out);
	sbuf_printf(b, "</td><td class=\"n%s\">%llu</td><td class=\"n lat\">",
	    v->connect_fail ? " bad" : "",
	    (unsigned long long)v->connect_fail);
	{
		struct hist_counts c;

		signals_server_recent(s, LAT_TTFB, &c);
		put_p95(b, "time to first byte", &c);
		sbuf_puts(b, " <span class=dim>/</span> ");
		signals_server_recent(s, LAT_CONNECT, &c);
		put_p95(b, "connect", &c);
	}
	sbuf_puts(b, "</td><td title=\"");
	if (checks && v->check_age_s >= 0)
		sbuf_html(b, s->check_detail);
	sbuf_puts(b, "\">");
	if (!checks)
		sbuf_puts(b, "<span class=dim>no check</span>");
	else if (v->check_age_s < 0)
		sbuf_puts(b, "<span class=dim>not yet</span>");
	else {
		sbuf_puts(b, "<b>");
		sbuf_html(b, s->check_result);
		sbuf_puts(b, "</b> ");
		put_ms(b, s->check_duration_ms);
		if (s->check_detail[0] != '\0') {
			sbuf_puts(b, " <span class=dim>");
			sbuf_html(b, s->check_detail);
			sbuf_puts(b, "</span>");
		}
	}
	sbuf_puts(b, "</td><td class=n>");
	put_age(b, v->last_change_s);
	sbuf_puts(b, "</td></tr>\n");
}

static void
html_backend(struct sbuf *b, struct backend *be, double now)
{
	struct server	*s;
	size_t		 up = backend_up(be);
	bool		 checks = be->conf.check != CHECK_NONE;

	sbuf_printf(b, "<section class=\"backend %s\" data-backend=\"",
	    up == be->nservers && up > 0 ? "all" : up > 0 ? "some" : "none");
	sbuf_html(b, be->name);
	sbuf_printf(b, "\" data-up=\"%zu\" data-total=\"%zu\"><h2>"
	    "<span>backend ", up, be->nservers);
	sbuf_html(b, be->name);
	sbuf_printf(b, "</span><span class=sub>balance %s &middot; check %s"
	    "%s", conf_balance_name(be->conf.balance),
	    conf_check_name(be->conf.check),
	    be->conf.discovery ? " &middot; discovery on" : "");
	if (atomic_load(&be->tls) != NULL) {
		struct tls_counters *t = &be->tls_stats;
		uint64_t fails = 0;

		for (int k = 0; k < TLS_FAIL_MAX; k++)
			fails += ld64(&t->fail[k]);
		sbuf_printf(b, " &middot; tls: %llu handshakes, %llu resumed, "
		    "%llu failed", (unsigned long long)ld64(&t->ok),
		    (unsigned long long)ld64(&t->resumed),
		    (unsigned long long)fails);
	}
	{
		struct hist_counts c;

		sbuf_puts(b, " &middot; ttfb p95 ");
		signals_backend_recent(be, LAT_TTFB, &c);
		put_p95(b, "time to first byte", &c);
		sbuf_puts(b, " &middot; queue p95 ");
		signals_queue_recent(be, &c);
		put_p95(b, "queue wait", &c);
		if (up > 0) {
			struct srv_view	v;
			double		cur = 0;

			TAILQ_FOREACH(s, &be->servers, entry) {
				srv_view(s, now, &v);
				cur += v.cur;
			}
			sbuf_printf(b, " &middot; %.1f sessions per up server",
			    cur / (double)up);
		}
	}
	if (be->conf.has_scale_up || be->conf.has_scale_down) {
		const struct scale_state *st = be->scale;
		int w = st ? st->wanted : 0;

		sbuf_printf(b, " &middot; scale: <span class=\"scale%s\" "
		    "data-wanted=\"%d\">%s</span>", w ? " bad" : "", w,
		    w > 0 ? "up wanted" : w < 0 ? "down wanted" : "steady");
		if (st != NULL && st->pid != 0)
			sbuf_printf(b, " (%s hook running)",
			    scale_action_name(st->running));
		else if (st != NULL && st->cooldown_until > now)
			sbuf_printf(b, " (cooldown %.0f s)",
			    st->cooldown_until - now);
	}
	sbuf_printf(b, "</span><span class=cnt>%zu/%zu up</span></h2>\n",
	    up, be->nservers);
	sbuf_puts(b, "<table class=srv><colgroup>"
	    "<col style=\"width:9%\"><col style=\"width:9%\">"
	    "<col style=\"width:9.5%\"><col style=\"width:7.5%\">"
	    "<col style=\"width:7%\"><col style=\"width:5%\">"
	    "<col style=\"width:5%\"><col style=\"width:7%\">"
	    "<col style=\"width:7%\"><col style=\"width:6%\">"
	    "<col style=\"width:9%\">"
	    "<col style=\"width:13%\"><col style=\"width:6%\"></colgroup>"
	    "<thead><tr><th>server</th><th>address</th>"
	    "<th>source</th><th>state</th><th class=n>weight</th>"
	    "<th class=n>active</th><th class=n>total</th>"
	    "<th class=n>bytes in</th><th class=n>bytes out</th>"
	    "<th class=n>conn fail</th>"
	    "<th class=n title=\"p95 over the last minute\">ttfb / conn p95"
	    "</th><th>last check</th>"
	    "<th class=n>changed</th></tr></thead><tbody>\n");
	if (TAILQ_EMPTY(&be->servers))
		sbuf_puts(b, "<tr><td colspan=13 class=dim>no server"
		    "</td></tr>\n");
	TAILQ_FOREACH(s, &be->servers, entry) {
		struct srv_view v;

		srv_view(s, now, &v);
		html_server(b, &v, checks);
	}
	sbuf_puts(b, "</tbody></table></section>\n");
}

/* The last STATS_HTML_EVENTS events, newest first. */
static void
html_events(struct sbuf *b)
{
	size_t	 n = events_count();
	size_t	 shown = n < STATS_HTML_EVENTS ? n : STATS_HTML_EVENTS;

	sbuf_printf(b, "<section class=events><h2><span>recent events</span>"
	    "<span class=sub>newest first; %zu kept, all in /stats.json and "
	    "<code>shoalctl show events</code></span></h2><table class=ev>"
	    "<thead><tr><th>time (UTC)</th><th>kind</th><th>where</th>"
	    "<th>what</th></tr></thead><tbody>\n", n);
	if (n == 0)
		sbuf_puts(b, "<tr><td colspan=4 class=dim>nothing yet</td>"
		    "</tr>\n");
	for (size_t i = 0; i < shown; i++) {
		const struct event	*e = events_get(n - 1 - i);
		time_t			 t = (time_t)e->at;
		struct tm		 tm;
		char			 ts[32];

		gmtime_r(&t, &tm);
		strftime(ts, sizeof(ts), "%Y-%m-%d %H:%M:%S", &tm);
		sbuf_printf(b, "<tr class=\"ev-%s\" data-kind=\"%s\"><td>%s"
		    "</td><td>%s</td><td>", events_kind_name(e->kind),
		    events_kind_name(e->kind), ts, events_kind_name(e->kind));
		sbuf_html(b, e->backend);
		if (e->server[0] != '\0') {
			sbuf_puts(b, "/");
			sbuf_html(b, e->server);
		}
		sbuf_puts(b, "</td><td>");
		sbuf_html(b, e->text);
		sbuf_puts(b, "</td></tr>\n");
	}
	sbuf_puts(b, "</tbody></table></section>\n");
}

struct html_ann {
	struct sbuf	*b;
	size_t		 live;		/* rows written */
	size_t		 gone;		/* tombstones, counted only */
};

#define HTML_ANN_MAX	200	/* announcement rows shown */

static void
html_announcement(const struct discovery_entry_info *e, void *arg)
{
	struct html_ann	*a = arg;
	struct sbuf	*b = a->b;

	if (strcmp(e->state, "gone") == 0) {
		a->gone++;
		return;
	}
	if (a->live++ >= HTML_ANN_MAX)
		return;
	if (a->live == 1)
		sbuf_puts(b, "<table><thead><tr><th>backend</th><th>server</th>"
		    "<th>label</th><th>state</th><th class=n>last heard"
		    "</th><th class=n>expires in</th></tr></thead><tbody>\n");
	sbuf_puts(b, "<tr class=announcement><td>");
	sbuf_html(b, e->backend);
	sbuf_puts(b, "</td><td>");
	sbuf_html(b, e->name);
	sbuf_puts(b, "</td><td class=lbl>");
	sbuf_html(b, e->label);
	sbuf_printf(b, "</td><td>%s</td><td class=n>%.1fs ago</td>"
	    "<td class=n>%.1fs</td></tr>\n", e->state, e->age_s, e->expires_s);
}

void
stats_html(struct control *c, struct sbuf *b)
{
	static const char *const states[] = { "up", "down", "checking",
	    "drain", "maint" };
	const struct discovery_view *dv = c->discovery;
	uint64_t	 dc[DISCOVERY_VERDICTS_MAX];
	struct html_ann	 ann = { .b = b };
	struct backend	*be;
	double		 now = ev_time();
	unsigned	 refresh = (S.refresh_ms ? S.refresh_ms : 5000) / 1000;
	char		 tbuf[32];
	time_t		 t = (time_t)now;
	struct tm	 tm;

	if (refresh == 0)
		refresh = 1;
	gmtime_r(&t, &tm);
	strftime(tbuf, sizeof(tbuf), "%Y-%m-%d %H:%M:%SZ", &tm);
	sbuf_printf(b, "<!DOCTYPE html>\n<html lang=en><head>"
	    "<meta charset=utf-8>"
	    "<meta http-equiv=refresh content=\"%u\">"
	    "<meta name=viewport content=\"width=device-width\">"
	    "<title>shoal stats</title><style>%s</style></head>\n<body>\n"
	    "<header><h1>shoal</h1>"
	    "<span><span class=k>version</span>%s</span>"
	    "<span><span class=k>pid</span>%ld</span>"
	    "<span><span class=k>uptime</span>", refresh, html_css,
	    SHOAL_VERSION, (long)getpid());
	put_age(b, now - c->started);
	sbuf_printf(b, "</span><span><span class=k>workers</span>%zu</span>"
	    "<span><span class=k>sessions</span>%u active, %llu total</span>"
	    "<span><span class=k>config</span>", c->nworkers,
	    ld32(&proxy_limits.cur),
	    (unsigned long long)ld64(&proxy_limits.total));
	sbuf_html(b, config_name(c));
	sbuf_printf(b, "</span><span><span class=k>reloads</span>%u</span>",
	    c->reloads);
	if (c->reload_error[0] != '\0') {
		sbuf_puts(b, "<span class=err>last reload failed: ");
		sbuf_html(b, c->reload_error);
		sbuf_puts(b, "</span>");
	}
	if (c->stopping)
		sbuf_puts(b, "<span class=err>stopping</span>");
	sbuf_puts(b, "</header>\n<main>\n<div class=legend>");
	for (size_t i = 0; i < sizeof(states) / sizeof(states[0]); i++)
		sbuf_printf(b, "<span class=\"badge state-%s\">%s</span>",
		    states[i], states[i]);
	sbuf_printf(b, " &nbsp; refreshes every %us &middot; "
	    "<a href=\"/stats.json\">/stats.json</a> &middot; "
	    "<a href=\"/metrics\">/metrics</a></div>\n", refresh);

	sbuf_puts(b, "<section class=frontends><h2><span>frontends</span>"
	    "</h2><table><thead><tr><th>frontend</th><th>bind</th>"
	    "<th>backend</th><th class=n>active</th><th class=n>total</th>"
	    "<th class=n>rate</th><th class=n>refused</th>"
	    "<th class=n>tls handshakes</th></tr></thead><tbody>\n");
	for (size_t i = 0; i < c->nfrontends; i++) {
		struct frontend	*fe = c->frontends[i];
		struct backend	*fb = atomic_load(&fe->backend);

		sbuf_puts(b, "<tr class=frontend data-frontend=\"");
		sbuf_html(b, fe->name);
		sbuf_puts(b, "\"><td>");
		sbuf_html(b, fe->name);
		sbuf_puts(b, "</td><td>");
		for (size_t j = 0; j < fe->nbinds; j++) {
			char abuf[NET_ADDRSTRLEN];

			if (j)
				sbuf_puts(b, ", ");
			sbuf_html(b, net_addr_str(
			    (struct sockaddr *)&fe->binds[j].ss, abuf,
			    sizeof(abuf)));
		}
		sbuf_puts(b, "</td><td>");
		sbuf_html(b, fb != NULL ? fb->name : "");
		sbuf_printf(b, "</td><td class=n>%u", ld32(&fe->cur));
		if (ldint(&fe->maxconn) > 0)
			sbuf_printf(b, "<span class=dim>/%d</span>",
			    ldint(&fe->maxconn));
		sbuf_printf(b, "</td><td class=n>%llu</td>"
		    "<td class=n>%.1f/s</td>",
		    (unsigned long long)ld64(&fe->total), frontend_rate(fe));
		html_refused(b, fe);
		html_tls(b, &fe->tls_stats, atomic_load(&fe->tls) != NULL);
		sbuf_puts(b, "</tr>\n");
	}
	sbuf_puts(b, "</tbody></table></section>\n");

	TAILQ_FOREACH(be, &c->backends, entry)
		html_backend(b, be, now);

	if (dv != NULL)
		dv->counters(dc);
	sbuf_puts(b, "<section class=discovery><h2><span>discovery</span>"
	    "<span class=sub>datagrams by verdict</span></h2>"
	    "<table class=auto><thead>"
	    "<tr>");
	for (int i = 0; dv != NULL && i < dv->nverdicts; i++)
		sbuf_printf(b, "<th class=n>%s</th>", dv->verdict_name(i));
	sbuf_puts(b, "</tr></thead><tbody><tr class=verdicts>");
	for (int i = 0; dv != NULL && i < dv->nverdicts; i++)
		sbuf_printf(b, "<td class=\"n%s\" data-verdict=\"%s\">"
		    "%llu</td>", i != 0 && dc[i] ? " bad" : "",
		    dv->verdict_name(i), (unsigned long long)dc[i]);
	sbuf_puts(b, "</tr></tbody></table>\n");
	if (dv != NULL)
		dv->foreach(html_announcement, &ann);
	if (ann.live > 0)
		sbuf_puts(b, "</tbody></table>\n");
	if (ann.live > HTML_ANN_MAX)
		sbuf_printf(b, "<p class=dim>&nbsp; %zu more announcements "
		    "not shown (see /stats.json)</p>\n",
		    ann.live - HTML_ANN_MAX);
	sbuf_puts(b, "</section>\n");
	html_events(b);
	sbuf_puts(b, "</main>\n<footer>generated ");
	sbuf_puts(b, tbuf);
	sbuf_printf(b, " by shoal %s</footer>\n</body></html>\n",
	    SHOAL_VERSION);
}

/* ---- frontend rates ---------------------------------------------------- */

static void
rate_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct control	*c = S.c;
	double		 now = ev_now(loop), dt = now - S.rate_last;
	size_t		 n = 0;

	(void)w;
	(void)revents;
	if (c == NULL)
		return;
	for (size_t i = 0; i < S.nrates; i++)
		S.rates[i].seen = false;
	for (size_t i = 0; i < c->nfrontends; i++) {
		const struct frontend	*fe = c->frontends[i];
		uint64_t		 total = ld64(&c->frontends[i]->total);
		struct stats_rate	*r = NULL;

		for (size_t j = 0; j < S.nrates && r == NULL; j++)
			if (S.rates[j].fe == fe)
				r = &S.rates[j];
		if (r == NULL) {
			/* A new frontend: its rate starts at the next tick. */
			struct stats_rate *nr = reallocarray(S.rates,
			    S.nrates + 1, sizeof(*nr));

			if (nr == NULL)
				continue;
			S.rates = nr;
			r = &S.rates[S.nrates++];
			r->fe = fe;
			r->prev = total;
			r->rate = 0;
			r->seen = true;
			continue;
		}
		r->rate = dt > 0 ? (double)(total - r->prev) / dt : 0;
		r->prev = total;
		r->seen = true;
	}
	/* Forget frontends removed by a reload. */
	for (size_t i = 0; i < S.nrates; i++)
		if (S.rates[i].seen)
			S.rates[n++] = S.rates[i];
	S.nrates = n;
	S.rate_last = now;
}

static void
rate_start(void)
{
	double period = S.refresh_ms / 1000.0;

	ev_timer_stop(S.c->loop, &S.rate_timer);
	ev_timer_init(&S.rate_timer, rate_cb, period, period);
	ev_timer_start(S.c->loop, &S.rate_timer);
}

/* A new [stats] refresh: the page's and the rates' period. */
static void
refresh_set(uint32_t ms)
{
	if (ms == 0 || ms == S.refresh_ms)
		return;
	S.refresh_ms = ms;
	rate_start();
}

void
stats_clients(size_t *active, uint64_t *refused, uint64_t *evicted)
{
	*active = S.cs.nclients;
	*refused = S.cs.refused;
	*evicted = S.cs.evicted;
}

/* ---- HTTP -------------------------------------------------------------- */

/*
 * The socket engine (ctlsock.c) accepts, reads into the client's input,
 * sends, times out and lingers; this part only reads the request head and
 * feeds the reply into the output, STATS_SLICE bytes at a time as the
 * socket drains.
 */

static const char *
status_text(int code)
{
	switch (code) {
	case 200:
		return "OK";
	case 400:
		return "Bad Request";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 431:
		return "Request Header Fields Too Large";
	case 500:
		return "Internal Server Error";
	case 503:
		return "Service Unavailable";
	case 505:
		return "HTTP Version Not Supported";
	default:
		return "Error";
	}
}

/* ---- shared documents ---- */

static void (*const renderers[])(struct control *, struct sbuf *) = {
	[SP_HTML] = stats_html,
	[SP_JSON] = stats_json,
	[SP_METRICS] = stats_metrics,
};

static void
doc_put(struct stats_doc *d)
{
	bool big;

	if (d == NULL || --d->refs > 0)
		return;
	if (d->path != SP_NONE)
		LIST_REMOVE(d, entry);
	big = d->body.cap >= STATS_TRIM_MIN;
	sbuf_free(&d->body);
	free(d);
	if (big)
		ctlsock_trim_later(S.c->loop);
}

/*
 * The body for path: the newest rendering of it when that is younger than
 * STATS_SHARE_S, or when STATS_DOCS_PER_PATH renderings are already being
 * sent (so slow readers pin at most that many copies, and a shared one is
 * never older than the write deadline plus STATS_SHARE_S); else a new
 * rendering. NULL when out of memory.
 */
static struct stats_doc *
doc_get(enum stats_path path)
{
	struct stats_doc	*d, *newest = NULL;
	ev_tstamp		 now = ev_now(S.c->loop);
	int			 live = 0;

	LIST_FOREACH(d, &S.docs, entry) {
		if (d->path != path)
			continue;
		if (newest == NULL)
			newest = d;
		live++;
	}
	if (newest != NULL && (now - newest->made < STATS_SHARE_S ||
	    live >= STATS_DOCS_PER_PATH)) {
		newest->refs++;
		return newest;
	}
	if ((d = calloc(1, sizeof(*d))) == NULL)
		return NULL;
	d->refs = 1;
	d->path = path;
	d->made = now;
	sbuf_init(&d->body);
	renderers[path](S.c, &d->body);
	if (sbuf_failed(&d->body)) {
		sbuf_free(&d->body);
		free(d);
		return NULL;
	}
	LIST_INSERT_HEAD(&S.docs, d, entry);
	return d;
}

/* An error reply's body, private to its client. */
static struct stats_doc *
doc_error(int code, const char *text)
{
	struct stats_doc *d;

	if ((d = calloc(1, sizeof(*d))) == NULL)
		return NULL;
	d->refs = 1;
	d->path = SP_NONE;
	sbuf_init(&d->body);
	sbuf_printf(&d->body, "%d %s\n", code, text);
	return d;
}

/* ---- replies ---- */

static bool	reply_send(struct ctlsock_client *, int, enum stats_path, bool);

/*
 * GET /healthz: the liveness probe (keepalived's track_script, a
 * container HEALTHCHECK, a Kubernetes livenessProbe). 200 "ok" while shoal
 * runs with its workers and listeners; 503 once it stops (SIGTERM, a
 * handover to a new shoal): the peer balancer takes over before clients
 * notice. Cheap: no document is rendered. A shoal that is killed or hung
 * does not answer at all, which the probe's timeout turns into a failure.
 */
static bool
client_health(struct ctlsock_client *cl, bool head_only)
{
	struct stats_client	*sc = cl->priv;
	const struct control	*c = S.c;
	struct stats_doc	*d;
	int			 code = c->stopping ? 503 : 200;

	if ((d = calloc(1, sizeof(*d))) == NULL) {
		ctlsock_close(cl, "out of memory");
		return false;
	}
	d->refs = 1;
	d->path = SP_NONE;
	sbuf_init(&d->body);
	if (code == 200)
		sbuf_printf(&d->body, "ok: %zu workers, %zu frontends\n",
		    c->nworkers, c->nfrontends);
	else
		sbuf_puts(&d->body, "stopping\n");
	sc->doc = d;
	return reply_send(cl, code, SP_NONE, head_only);
}

/* Copy the body into the output while it is below STATS_OUT_HIGH; when
 * all of it is there, let the document go and finish. True while some is
 * left. */
static bool
client_body(struct ctlsock_client *cl)
{
	struct stats_client *sc = cl->priv;

	while (ctlsock_pending(cl) < STATS_OUT_HIGH &&
	    sc->bodyoff < sc->bodylen) {
		size_t n = sc->bodylen - sc->bodyoff;

		if (n > STATS_SLICE)
			n = STATS_SLICE;
		sbuf_put(ctlsock_out(cl), sc->doc->body.data + sc->bodyoff, n);
		sc->bodyoff += n;
	}
	if (sc->bodyoff < sc->bodylen)
		return true;
	doc_put(sc->doc);
	sc->doc = NULL;
	ctlsock_finish(cl);
	return false;
}

/*
 * Answer: code 200 with the document for path, or an error code (path
 * ignored). Puts the head into the output and starts sending the body;
 * head_only: HEAD, the body is not sent. True while some body is left.
 */
static bool
client_reply(struct ctlsock_client *cl, int code, enum stats_path path,
    bool head_only)
{
	struct stats_client *sc = cl->priv;

	if (code == 200 && (sc->doc = doc_get(path)) == NULL)
		code = 500;
	if (code != 200) {
		path = SP_NONE;
		if ((sc->doc = doc_error(code, status_text(code))) == NULL) {
			ctlsock_close(cl, "out of memory");
			return false;
		}
	}
	return reply_send(cl, code, path, head_only);
}

/* Send sc->doc with its head. */
static bool
reply_send(struct ctlsock_client *cl, int code, enum stats_path path,
    bool head_only)
{
	static const char *const ctypes[] = {
		[SP_HTML] = "text/html; charset=utf-8",
		[SP_JSON] = "application/json",
		[SP_METRICS] = "text/plain; version=0.0.4; charset=utf-8",
		[SP_NONE] = "text/plain; charset=utf-8",
	};
	struct stats_client *sc = cl->priv;

	sbuf_printf(ctlsock_out(cl),
	    "HTTP/1.1 %d %s\r\n"
	    "Server: shoal/%s\r\n"
	    "Content-Type: %s\r\n"
	    "Content-Length: %zu\r\n"
	    "Cache-Control: no-store\r\n"
	    "X-Content-Type-Options: nosniff\r\n"
	    "%s%s"
	    "Connection: close\r\n"
	    "\r\n",
	    code, status_text(code), SHOAL_VERSION, ctypes[path],
	    sc->doc->body.len, code == 405 ? "Allow: GET, HEAD\r\n" : "",
	    path == SP_HTML ? "Content-Security-Policy: default-src 'none'; "
	    "style-src 'unsafe-inline'\r\n" : "");
	sc->bodylen = head_only ? 0 : sc->doc->body.len;
	sc->bodyoff = 0;
	sc->phase = SC_WRITE;
	ctlsock_deadline(cl, STATS_WRITE_TIMEOUT, false);
	return client_body(cl);
}

/*
 * Parse a request line (NUL-terminated, no CR/LF; split in place): 0 with
 * *method and *target set, or the status to answer (400, 505).
 */
static int
parse_request_line(char *line, char **method, char **target)
{
	char *version;

	*method = line;
	if ((*target = strchr(line, ' ')) == NULL)
		return 400;		/* also HTTP/0.9: "GET /" */
	*(*target)++ = '\0';
	if ((version = strchr(*target, ' ')) == NULL)
		return 400;
	*version++ = '\0';
	if (**method == '\0' || **target == '\0' ||
	    strchr(version, ' ') != NULL)
		return 400;
	if (strncmp(version, "HTTP/", 5) != 0)
		return 400;
	if (strcmp(version, "HTTP/1.0") != 0 &&
	    strcmp(version, "HTTP/1.1") != 0)
		return 505;
	return 0;
}

/*
 * The request line of req, NUL-terminated in place (leading empty lines
 * skipped, RFC 9112 2.2), or NULL while it is not complete.
 */
static char *
request_line(char *req)
{
	char *line = req, *eol;

	while (*line == '\r' || *line == '\n')
		line++;
	if ((eol = strchr(line, '\n')) == NULL)
		return NULL;
	*eol = '\0';
	if (eol > line && eol[-1] == '\r')
		eol[-1] = '\0';
	return line;
}

/* Answer the request whose head is complete in req. */
static bool
client_request(struct ctlsock_client *cl, char *req, size_t reqlen)
{
	char	*method, *target, *q;
	int	 code;
	bool	 head = false;

	if (memchr(req, '\0', reqlen) != NULL)
		return client_reply(cl, 400, SP_NONE, false);
	if ((code = parse_request_line(request_line(req), &method,
	    &target)) != 0)
		return client_reply(cl, code, SP_NONE, false);
	if (strcmp(method, "HEAD") == 0)
		head = true;
	else if (strcmp(method, "GET") != 0)
		return client_reply(cl, 405, SP_NONE, false);
	/* absolute-form: skip "http://authority". */
	if (strncasecmp(target, "http://", 7) == 0) {
		target = strchr(target + 7, '/');
		if (target == NULL)
			target = "/";
	}
	if ((q = strpbrk(target, "?#")) != NULL)
		*q = '\0';
	if (strcmp(target, "/") == 0)
		return client_reply(cl, 200, SP_HTML, head);
	if (strcmp(target, "/stats.json") == 0)
		return client_reply(cl, 200, SP_JSON, head);
	if (strcmp(target, "/metrics") == 0)
		return client_reply(cl, 200, SP_METRICS, head);
	if (strcmp(target, "/healthz") == 0)
		return client_health(cl, head);
	return client_reply(cl, 404, SP_NONE, head);
}

/*
 * A complete request line that cannot be answered 200 (HTTP/0.9, a bad
 * line, an unknown version) is answered at once: no head will make it
 * right. The status, or 0 while the line is fine or incomplete.
 */
static int
early_status(const char *req, size_t reqlen)
{
	const char	*p = req, *end = req + reqlen, *eol;
	char		 line[STATS_REQ_MAX + 1], *method, *target;
	size_t		 n;

	while (p < end && (*p == '\r' || *p == '\n'))
		p++;
	if ((eol = memchr(p, '\n', (size_t)(end - p))) == NULL)
		return 0;
	if (memchr(req, '\0', (size_t)(eol - req)) != NULL)
		return 400;
	n = (size_t)(eol - p);
	memcpy(line, p, n);
	line[n] = '\0';
	if (n > 0 && line[n - 1] == '\r')
		line[n - 1] = '\0';
	return parse_request_line(line, &method, &target);
}

/* The end of the request head in req[0, reqlen), searching from `from`. */
static bool
head_complete(const char *req, size_t reqlen, size_t from)
{
	const char *p = req + from, *end = req + reqlen;

	for (; p < end; p++) {
		if (*p != '\n')
			continue;
		/* "\n\n" or "\n\r\n": an empty line ends the head, unless it
		 * comes before the request line (skipped by the parser). */
		if ((p + 1 < end && p[1] == '\n') ||
		    (p + 2 < end && p[1] == '\r' && p[2] == '\n')) {
			const char *s = req;

			while (s < p && (*s == '\r' || *s == '\n'))
				s++;
			if (s < p)
				return true;
		}
	}
	return false;
}

/* The engine's run(): read the head, then feed the reply. */
static bool
stats_run(struct ctlsock_client *cl)
{
	struct stats_client	*sc = cl->priv;
	size_t			 reqlen;
	char			*req;
	int			 code;

	if (sc->phase == SC_WRITE)
		return client_body(cl);
	req = ctlsock_in(cl, &reqlen);
	if (head_complete(req, reqlen, sc->scanned))
		return client_request(cl, req, reqlen);
	if ((code = early_status(req, reqlen)) != 0)
		return client_reply(cl, code, SP_NONE, false);
	sc->scanned = reqlen > 2 ? reqlen - 2 : 0;
	if (reqlen == STATS_REQ_MAX)
		return client_reply(cl, 431, SP_NONE, false);
	return false;
}

static void
stats_open(struct ctlsock_client *cl)
{
	struct stats_client *sc;

	if ((sc = calloc(1, sizeof(*sc))) == NULL) {
		log_warn("stats: client %s", cl->peer);
		ctlsock_close(cl, "out of memory");
		return;
	}
	sc->phase = SC_READ;
	cl->priv = sc;
	ctlsock_deadline(cl, STATS_READ_TIMEOUT, false);
}

static void
stats_close(struct ctlsock_client *cl)
{
	struct stats_client *sc = cl->priv;

	if (sc == NULL)
		return;
	doc_put(sc->doc);
	free(sc);
	cl->priv = NULL;
}

/*
 * All slots taken and a new client waits: the oldest client still
 * reading its head gives way (a slowloris loses its slot; a real request
 * arrives whole and is answered at once). None: the new one is refused.
 */
static struct ctlsock_client *
stats_evict(struct ctlsock *cs)
{
	struct ctlsock_client *cl;

	TAILQ_FOREACH(cl, &cs->clients, entry) {
		struct stats_client *sc = cl->priv;

		if (sc != NULL && sc->phase == SC_READ)
			return cl;
	}
	return NULL;
}

static const struct ctlsock_ops stats_ops = {
	.name = "stats",
	.clients_max = STATS_CLIENTS_MAX,
	.in_max = STATS_REQ_MAX,
	.out_high = STATS_OUT_HIGH,
	.backlog = STATS_BACKLOG,
	.linger_s = STATS_LINGER_TIMEOUT,
	.linger_max = STATS_LINGER_MAX,
	.run = stats_run,
	.open = stats_open,
	.close = stats_close,
	.evict = stats_evict,
};

/* ---- listener ---------------------------------------------------------- */

static void
listening_on(const struct conf_addr *a)
{
	char abuf[NET_ADDRSTRLEN];

	log_info("stats listening on %s", net_addr_str(
	    (const struct sockaddr *)&a->ss, abuf, sizeof(abuf)));
}

int
stats_start(struct control *c)
{
	const struct conf_stats *cs = &c->conf->stats;
	char			 abuf[NET_ADDRSTRLEN];

	S.c = c;
	LIST_INIT(&S.docs);
	ctlsock_init(&S.cs, c->loop, &stats_ops);
	S.l = NULL;
	S.refresh_ms = cs->enabled && cs->refresh_ms > 0 ? cs->refresh_ms :
	    5000;
	/* Rates are kept even without a listener: the admin socket shows
	 * them too. */
	S.rate_last = ev_now(c->loop);
	ev_timer_init(&S.rate_timer, rate_cb, 0, 0);
	rate_start();
	rate_cb(c->loop, &S.rate_timer, 0);
	if (!cs->enabled)
		return 0;
	if ((S.l = ctlsock_listen_tcp(&S.cs, &cs->bind)) == NULL) {
		log_error("stats: cannot listen on %s", net_addr_str(
		    (const struct sockaddr *)&cs->bind.ss, abuf,
		    sizeof(abuf)));
		return -1;
	}
	listening_on(&cs->bind);
	return 0;
}

int
stats_reload(const struct conf *nc)
{
	const struct conf_stats *cs = &nc->stats;
	char			 abuf[NET_ADDRSTRLEN];
	bool			 had;

	if (S.c == NULL)
		return 0;
	if (!cs->enabled) {
		if (S.l != NULL)
			log_info("stats: listener removed by reload");
		ctlsock_listener_close(S.l);
		S.l = NULL;
		return 0;
	}
	if (S.l != NULL && net_addr_equal((const struct sockaddr *)&S.l->addr.ss,
	    (const struct sockaddr *)&cs->bind.ss)) {
		refresh_set(cs->refresh_ms);
		return 0;
	}
	net_addr_str((const struct sockaddr *)&cs->bind.ss, abuf,
	    sizeof(abuf));
	/* The new address first: on failure the old one keeps serving. */
	had = S.l != NULL;
	if (ctlsock_move_tcp(&S.cs, &S.l, &cs->bind) == 0) {
		listening_on(&cs->bind);
		refresh_set(cs->refresh_ms);
		return 0;
	}
	if (had && S.l == NULL)
		log_error("stats: cannot listen on the previous address "
		    "again; stats are off");
	log_warn("stats: reload: cannot listen on %s%s", abuf,
	    S.l != NULL ? " (previous address kept)" : "");
	return -1;
}

void
stats_stop_listening(void)
{
	if (S.c == NULL)
		return;
	ctlsock_stop_listening(&S.cs);
	S.l = NULL;
}

void
stats_stop(void)
{
	if (S.c == NULL)
		return;
	ctlsock_fini(&S.cs);
	S.l = NULL;
	ev_timer_stop(S.c->loop, &S.rate_timer);
	free(S.rates);
	S.rates = NULL;
	S.nrates = 0;
	S.c = NULL;
}
