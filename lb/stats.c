/*
 * stats.c - the stats listener: "/" (HTML), "/stats.json" and "/metrics"
 * (Prometheus text format 0.0.4), served from the control loop.
 *
 * A stats client goes through three phases, each with its own deadline,
 * and is never waited for:
 *
 *   accept --> READ head (<= 8 KiB, 5 s) --> WRITE reply (10 s) --> LINGER
 *                 |  over 8 KiB: 431          EV_WRITE only        (drain
 *                 |  bad line: 400/405/404/505                     until EOF,
 *                 +-- EOF, error, timeout: close                   2 s) close
 *
 * At most STATS_CLIENTS_MAX clients exist at once (more are closed at
 * accept); each holds its request head and one reply, nothing else. The
 * documents are built from the live server table: the table is written
 * only by this thread, the per-server counters are relaxed atomics written
 * by the workers. Frontend rates (sessions/s) are sampled by a timer every
 * [stats] refresh from the frontends' totals.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "net.h"
#include "stats.h"

#define STATS_CLIENTS_MAX	64	/* concurrent clients; more: closed */
#define STATS_REQ_MAX		8192	/* request line + headers */
#define STATS_HDR_MAX		512	/* reply status line + headers */
#define STATS_ACCEPT_BATCH	16	/* accepts per wake-up */
#define STATS_READ_TIMEOUT	5.0	/* s, accept to the end of the head */
#define STATS_WRITE_TIMEOUT	10.0	/* s, to write the whole reply */
#define STATS_LINGER_TIMEOUT	2.0	/* s, draining after the reply */
#define STATS_LINGER_MAX	65536	/* bytes drained before giving up */
#define STATS_EMFILE_RETRY	1.0	/* s, accept paused after EMFILE */
#define STATS_BACKLOG		128

enum sc_phase {
	SC_READ,		/* reading the request head */
	SC_WRITE,		/* writing hdr + body */
	SC_LINGER,		/* reply sent, SHUT_WR, draining until EOF */
};

struct stats_client {
	LIST_ENTRY(stats_client) entry;
	int			 fd;
	ev_io			 io;
	ev_timer		 timer;		/* this phase's deadline */
	enum sc_phase		 phase;
	size_t			 reqlen;	/* bytes in req */
	char			 req[STATS_REQ_MAX + 1]; /* NUL-terminated */
	char			 hdr[STATS_HDR_MAX];	/* reply head */
	size_t			 hdrlen;
	struct sbuf		 body;		/* reply body */
	size_t			 bodylen;	/* body to send (HEAD: 0) */
	size_t			 sent;		/* of hdrlen + bodylen */
	size_t			 drained;	/* LINGER: bytes discarded */
};

LIST_HEAD(stats_client_list, stats_client);

/* Sessions/s of one frontend over the last sampling period. */
struct stats_rate {
	const struct frontend	*fe;		/* the frontend sampled */
	uint64_t		 prev;		/* total at the last sample */
	double			 rate;
	bool			 seen;		/* still listed at this tick */
};

static struct {
	struct control		*c;		/* NULL before stats_start() */
	bool			 bound;		/* fd is our listener */
	int			 fd;
	struct conf_addr	 bind;		/* what fd is bound to */
	uint32_t		 refresh_ms;	/* page refresh, rate period */
	ev_io			 accept_io;
	ev_timer		 accept_retry;	/* EMFILE back-off */
	ev_timer		 rate_timer;
	ev_tstamp		 rate_last;	/* last rate sample */
	struct stats_rate	*rates;		/* [nrates] */
	size_t			 nrates;
	struct stats_client_list clients;
	size_t			 nclients;
	struct ratelimit	 rl_accept;	/* accept errors */
	struct ratelimit	 rl_full;	/* over STATS_CLIENTS_MAX */
} S = { .fd = -1 };

/* ---- small formatting helpers ------------------------------------------ */

static uint64_t
ld64(_Atomic uint64_t *v)
{
	return atomic_load_explicit(v, memory_order_relaxed);
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

/* ---- the data, read once per server ------------------------------------ */

/* What every document shows of one server. */
struct srv_view {
	const struct server	*s;
	const char		*state;		/* summary state */
	int			 weight;
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
	sbuf_printf(b, "},\"last_change_s\":%.3f}", v->last_change_s);
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
		    ",\"rate\":%.3f,\"maxconn\":%d}", ld32(&fe->cur),
		    (unsigned long long)ld64(&fe->total), frontend_rate(fe),
		    ldint(&fe->maxconn));
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
		    ",\"sessions_active\":%u,\"sessions_total\":%llu}",
		    up, be->nservers, cur, (unsigned long long)total);
	}
	sbuf_puts(b, "],\n\"discovery\":{");
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
	sbuf_puts(b, "]}\n");
}

/* ---- /metrics ---------------------------------------------------------- */

static void
prom_family(struct sbuf *b, const char *name, const char *type,
    const char *help)
{
	sbuf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
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
	".src{color:#52606d}.lbl{color:#1c6fd1}"
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
	    "<td class=n>%d</td><td class=n>%u", v->state, v->weight, v->cur);
	if (v->maxconn > 0)
		sbuf_printf(b, "<span class=dim>/%d</span>", v->maxconn);
	sbuf_printf(b, "</td><td class=n>%llu</td><td class=n title=\"%llu\">",
	    (unsigned long long)v->total, (unsigned long long)v->bytes_in);
	put_bytes(b, v->bytes_in);
	sbuf_printf(b, "</td><td class=n title=\"%llu\">",
	    (unsigned long long)v->bytes_out);
	put_bytes(b, v->bytes_out);
	sbuf_printf(b, "</td><td class=\"n%s\">%llu</td><td title=\"",
	    v->connect_fail ? " bad" : "",
	    (unsigned long long)v->connect_fail);
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
	    "%s</span><span class=cnt>%zu/%zu up</span></h2>\n",
	    conf_balance_name(be->conf.balance),
	    conf_check_name(be->conf.check),
	    be->conf.discovery ? " &middot; discovery on" : "",
	    up, be->nservers);
	sbuf_puts(b, "<table class=srv><colgroup>"
	    "<col style=\"width:12%\"><col style=\"width:11.5%\">"
	    "<col style=\"width:12%\"><col style=\"width:7.5%\">"
	    "<col style=\"width:5%\"><col style=\"width:5%\">"
	    "<col style=\"width:5%\"><col style=\"width:7%\">"
	    "<col style=\"width:7%\"><col style=\"width:6%\">"
	    "<col style=\"width:15%\"><col style=\"width:7%\"></colgroup>"
	    "<thead><tr><th>server</th><th>address</th>"
	    "<th>source</th><th>state</th><th class=n>weight</th>"
	    "<th class=n>active</th><th class=n>total</th>"
	    "<th class=n>bytes in</th><th class=n>bytes out</th>"
	    "<th class=n>conn fail</th><th>last check</th>"
	    "<th class=n>changed</th></tr></thead><tbody>\n");
	if (TAILQ_EMPTY(&be->servers))
		sbuf_puts(b, "<tr><td colspan=12 class=dim>no server"
		    "</td></tr>\n");
	TAILQ_FOREACH(s, &be->servers, entry) {
		struct srv_view v;

		srv_view(s, now, &v);
		html_server(b, &v, checks);
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
	    "<th class=n>rate</th></tr></thead><tbody>\n");
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
		    "<td class=n>%.1f/s</td></tr>\n",
		    (unsigned long long)ld64(&fe->total), frontend_rate(fe));
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
	sbuf_puts(b, "</section>\n</main>\n<footer>generated ");
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

/* ---- HTTP -------------------------------------------------------------- */

/*
 * Close a client and free it. Freeing from its own callback is safe here:
 * a client's callbacks are flat (nothing up the stack uses it afterwards)
 * and libev forgets the pending events of stopped watchers.
 */
static void
client_close(struct stats_client *cl)
{
	struct ev_loop *loop = S.c->loop;

	ev_io_stop(loop, &cl->io);
	ev_timer_stop(loop, &cl->timer);
	net_close(cl->fd);
	sbuf_free(&cl->body);
	LIST_REMOVE(cl, entry);
	S.nclients--;
	free(cl);
}

static void
client_deadline(struct stats_client *cl, double after)
{
	ev_timer_stop(S.c->loop, &cl->timer);
	ev_timer_set(&cl->timer, after, 0);
	ev_timer_start(S.c->loop, &cl->timer);
}

static void
client_events(struct stats_client *cl, int events)
{
	ev_io_stop(S.c->loop, &cl->io);
	ev_io_set(&cl->io, cl->fd, events);
	ev_io_start(S.c->loop, &cl->io);
}

/* Reply sent: stop sending, then drain what the client still sends so
 * that our close does not turn into an RST that eats the reply. */
static void
client_linger(struct stats_client *cl)
{
	sbuf_free(&cl->body);
	(void)shutdown(cl->fd, SHUT_WR);
	cl->phase = SC_LINGER;
	client_events(cl, EV_READ);
	client_deadline(cl, STATS_LINGER_TIMEOUT);
}

/* Write what the socket takes. Returns false if the client was closed. */
static bool
client_write(struct stats_client *cl)
{
	size_t	 total = cl->hdrlen + cl->bodylen;

	while (cl->sent < total) {
		struct iovec	 iov[2];
		struct msghdr	 msg;
		int		 niov = 0;
		ssize_t		 n;

		if (cl->sent < cl->hdrlen) {
			iov[niov].iov_base = cl->hdr + cl->sent;
			iov[niov++].iov_len = cl->hdrlen - cl->sent;
			if (cl->bodylen > 0) {
				iov[niov].iov_base = cl->body.data;
				iov[niov++].iov_len = cl->bodylen;
			}
		} else {
			iov[niov].iov_base = cl->body.data +
			    (cl->sent - cl->hdrlen);
			iov[niov++].iov_len = total - cl->sent;
		}
		memset(&msg, 0, sizeof(msg));
		msg.msg_iov = iov;
		msg.msg_iovlen = niov;
		n = sendmsg(cl->fd, &msg, MSG_NOSIGNAL);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return true;
			client_close(cl);
			return false;
		}
		cl->sent += (size_t)n;
	}
	client_linger(cl);
	return true;
}

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
	case 505:
		return "HTTP Version Not Supported";
	default:
		return "Error";
	}
}

/*
 * Prepare the reply (cl->body already holds the body, or is empty for an
 * error) and start writing it. head_only: HEAD, the body is not sent.
 */
static void
client_reply(struct stats_client *cl, int code, const char *ctype,
    bool head_only)
{
	int n;

	if (sbuf_failed(&cl->body)) {
		sbuf_free(&cl->body);
		code = 500;
		ctype = NULL;
	}
	if (code != 200) {
		sbuf_reset(&cl->body);
		sbuf_printf(&cl->body, "%d %s\n", code, status_text(code));
		ctype = "text/plain; charset=utf-8";
	}
	n = snprintf(cl->hdr, sizeof(cl->hdr),
	    "HTTP/1.1 %d %s\r\n"
	    "Server: shoal/%s\r\n"
	    "Content-Type: %s\r\n"
	    "Content-Length: %zu\r\n"
	    "Cache-Control: no-store\r\n"
	    "X-Content-Type-Options: nosniff\r\n"
	    "%s%s"
	    "Connection: close\r\n"
	    "\r\n",
	    code, status_text(code), SHOAL_VERSION, ctype, cl->body.len,
	    code == 405 ? "Allow: GET, HEAD\r\n" : "",
	    strncmp(ctype, "text/html", 9) == 0 ?
	    "Content-Security-Policy: default-src 'none'; "
	    "style-src 'unsafe-inline'\r\n" : "");
	cl->hdrlen = n > 0 && (size_t)n < sizeof(cl->hdr) ? (size_t)n : 0;
	cl->bodylen = head_only || sbuf_failed(&cl->body) ? 0 : cl->body.len;
	cl->sent = 0;
	cl->phase = SC_WRITE;
	client_deadline(cl, STATS_WRITE_TIMEOUT);
	client_events(cl, EV_WRITE);
	(void)client_write(cl);
}

/* Parse the request line in cl->req and answer it. */
static void
client_request(struct stats_client *cl)
{
	char	*line = cl->req, *eol, *method, *target, *version, *q;
	bool	 head = false;

	if (memchr(cl->req, '\0', cl->reqlen) != NULL) {
		client_reply(cl, 400, NULL, false);
		return;
	}
	/* Tolerate empty lines before the request line (RFC 9112 2.2). */
	while (*line == '\r' || *line == '\n')
		line++;
	eol = strchr(line, '\n');
	*eol = '\0';
	if (eol > line && eol[-1] == '\r')
		eol[-1] = '\0';
	method = line;
	if ((target = strchr(method, ' ')) == NULL) {
		client_reply(cl, 400, NULL, false);
		return;
	}
	*target++ = '\0';
	if ((version = strchr(target, ' ')) == NULL) {
		client_reply(cl, 400, NULL, false);
		return;
	}
	*version++ = '\0';
	if (*method == '\0' || *target == '\0' ||
	    strchr(version, ' ') != NULL) {
		client_reply(cl, 400, NULL, false);
		return;
	}
	if (strncmp(version, "HTTP/", 5) != 0) {
		client_reply(cl, 400, NULL, false);
		return;
	}
	if (strcmp(version, "HTTP/1.0") != 0 &&
	    strcmp(version, "HTTP/1.1") != 0) {
		client_reply(cl, 505, NULL, false);
		return;
	}
	if (strcmp(method, "HEAD") == 0)
		head = true;
	else if (strcmp(method, "GET") != 0) {
		client_reply(cl, 405, NULL, false);
		return;
	}
	/* absolute-form: skip "http://authority". */
	if (strncasecmp(target, "http://", 7) == 0) {
		target = strchr(target + 7, '/');
		if (target == NULL)
			target = "/";
	}
	if ((q = strpbrk(target, "?#")) != NULL)
		*q = '\0';
	if (strcmp(target, "/") == 0) {
		stats_html(S.c, &cl->body);
		client_reply(cl, 200, "text/html; charset=utf-8", head);
	} else if (strcmp(target, "/stats.json") == 0) {
		stats_json(S.c, &cl->body);
		client_reply(cl, 200, "application/json", head);
	} else if (strcmp(target, "/metrics") == 0) {
		stats_metrics(S.c, &cl->body);
		client_reply(cl, 200,
		    "text/plain; version=0.0.4; charset=utf-8", head);
	} else
		client_reply(cl, 404, NULL, head);
}

/* The end of the request head in req[0, reqlen), searching from `from`. */
static bool
head_complete(const struct stats_client *cl, size_t from)
{
	const char *p = cl->req + from, *end = cl->req + cl->reqlen;

	for (; p < end; p++) {
		if (*p != '\n')
			continue;
		/* "\n\n" or "\n\r\n": an empty line ends the head, unless it
		 * comes before the request line (skipped by the parser). */
		if ((p + 1 < end && p[1] == '\n') ||
		    (p + 2 < end && p[1] == '\r' && p[2] == '\n')) {
			const char *s = cl->req;

			while (s < p && (*s == '\r' || *s == '\n'))
				s++;
			if (s < p)
				return true;
		}
	}
	return false;
}

static void
client_read(struct stats_client *cl)
{
	for (;;) {
		size_t	 room = STATS_REQ_MAX - cl->reqlen;
		size_t	 from = cl->reqlen > 2 ? cl->reqlen - 2 : 0;
		ssize_t	 n;

		if (room == 0) {
			client_reply(cl, 431, NULL, false);
			return;
		}
		n = read(cl->fd, cl->req + cl->reqlen, room);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			client_close(cl);
			return;
		}
		if (n == 0) {
			client_close(cl);
			return;
		}
		cl->reqlen += (size_t)n;
		cl->req[cl->reqlen] = '\0';
		if (head_complete(cl, from)) {
			client_request(cl);
			return;
		}
	}
}

/* After the reply: discard input until EOF, a cap, or the deadline. */
static void
client_drain(struct stats_client *cl)
{
	char	 buf[4096];
	ssize_t	 n;

	for (;;) {
		n = read(cl->fd, buf, sizeof(buf));
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n <= 0 || (cl->drained += (size_t)n) > STATS_LINGER_MAX) {
			client_close(cl);
			return;
		}
	}
}

static void
client_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct stats_client *cl = w->data;

	(void)loop;
	(void)revents;
	switch (cl->phase) {
	case SC_READ:
		client_read(cl);
		break;
	case SC_WRITE:
		(void)client_write(cl);
		break;
	case SC_LINGER:
		client_drain(cl);
		break;
	}
}

static void
client_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct stats_client *cl = w->data;

	(void)loop;
	(void)revents;
	/* Too slow to send its request, to take its reply or to leave. */
	client_close(cl);
}

static void
client_new(int fd)
{
	struct stats_client *cl;

	if ((cl = malloc(sizeof(*cl))) == NULL) {
		net_close(fd);
		return;
	}
	cl->fd = fd;
	cl->phase = SC_READ;
	cl->reqlen = 0;
	cl->req[0] = '\0';
	cl->hdrlen = cl->bodylen = cl->sent = cl->drained = 0;
	sbuf_init(&cl->body);
	ev_io_init(&cl->io, client_io_cb, fd, EV_READ);
	cl->io.data = cl;
	ev_timer_init(&cl->timer, client_timer_cb, STATS_READ_TIMEOUT, 0);
	cl->timer.data = cl;
	LIST_INSERT_HEAD(&S.clients, cl, entry);
	S.nclients++;
	ev_io_start(S.c->loop, &cl->io);
	ev_timer_start(S.c->loop, &cl->timer);
}

static void
accept_retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)w;
	(void)revents;
	if (S.bound)
		ev_io_start(loop, &S.accept_io);
}

static void
accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	(void)revents;
	for (int i = 0; i < STATS_ACCEPT_BATCH; i++) {
		int fd = accept4(w->fd, NULL, NULL,
		    SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd == -1) {
			if (errno == EAGAIN || errno == EWOULDBLOCK ||
			    errno == EINTR || errno == ECONNABORTED)
				return;
			if (errno == EMFILE || errno == ENFILE ||
			    errno == ENOBUFS || errno == ENOMEM) {
				/* Not a busy loop: pause, retry later. */
				ev_io_stop(loop, w);
				ev_timer_stop(loop, &S.accept_retry);
				ev_timer_set(&S.accept_retry,
				    STATS_EMFILE_RETRY, 0);
				ev_timer_start(loop, &S.accept_retry);
			}
			if (log_ratelimit(&S.rl_accept, 1))
				log_warn("stats: accept (%lu more suppressed)",
				    log_ratelimit_suppressed(&S.rl_accept));
			return;
		}
		if (S.nclients >= STATS_CLIENTS_MAX) {
			net_close(fd);
			if (log_ratelimit(&S.rl_full, 1))
				log_warnx("stats: %d clients already, closing "
				    "new ones (%lu more suppressed)",
				    STATS_CLIENTS_MAX,
				    log_ratelimit_suppressed(&S.rl_full));
			continue;
		}
		client_new(fd);
	}
}

/* ---- listener ---------------------------------------------------------- */

static int
listener_open(const struct conf_addr *a)
{
	return net_listen((const struct sockaddr *)&a->ss, a->len, false,
	    STATS_BACKLOG);
}

/* Take fd as the listener for a (the previous one, if any, is closed;
 * its clients finish). */
static void
listener_set(int fd, const struct conf_addr *a)
{
	char abuf[NET_ADDRSTRLEN];

	if (S.bound) {
		ev_io_stop(S.c->loop, &S.accept_io);
		ev_timer_stop(S.c->loop, &S.accept_retry);
		net_close(S.fd);
	}
	S.fd = fd;
	S.bind = *a;
	S.bound = true;
	ev_io_init(&S.accept_io, accept_cb, fd, EV_READ);
	ev_io_start(S.c->loop, &S.accept_io);
	log_info("stats listening on %s", net_addr_str(
	    (const struct sockaddr *)&a->ss, abuf, sizeof(abuf)));
}

static void
listener_close(void)
{
	if (!S.bound)
		return;
	ev_io_stop(S.c->loop, &S.accept_io);
	ev_timer_stop(S.c->loop, &S.accept_retry);
	net_close(S.fd);
	S.fd = -1;
	S.bound = false;
}

int
stats_start(struct control *c)
{
	const struct conf_stats *cs = &c->conf->stats;
	char			 abuf[NET_ADDRSTRLEN];
	int			 fd;

	S.c = c;
	S.fd = -1;
	S.bound = false;
	LIST_INIT(&S.clients);
	S.nclients = 0;
	S.refresh_ms = cs->enabled && cs->refresh_ms > 0 ? cs->refresh_ms :
	    5000;
	ev_timer_init(&S.accept_retry, accept_retry_cb, STATS_EMFILE_RETRY, 0);
	/* Rates are kept even without a listener: the admin socket shows
	 * them too. */
	S.rate_last = ev_now(c->loop);
	ev_timer_init(&S.rate_timer, rate_cb, 0, 0);
	rate_start();
	rate_cb(c->loop, &S.rate_timer, 0);
	if (!cs->enabled)
		return 0;
	if ((fd = listener_open(&cs->bind)) == -1) {
		log_error("stats: cannot listen on %s", net_addr_str(
		    (const struct sockaddr *)&cs->bind.ss, abuf,
		    sizeof(abuf)));
		return -1;
	}
	listener_set(fd, &cs->bind);
	return 0;
}

int
stats_reload(const struct conf *nc)
{
	const struct conf_stats *cs = &nc->stats;
	char			 abuf[NET_ADDRSTRLEN];
	int			 fd, saved;

	if (S.c == NULL)
		return 0;
	if (!cs->enabled) {
		if (S.bound)
			log_info("stats: listener removed by reload");
		listener_close();
		return 0;
	}
	if (S.bound && net_addr_equal((const struct sockaddr *)&S.bind.ss,
	    (const struct sockaddr *)&cs->bind.ss)) {
		refresh_set(cs->refresh_ms);
		return 0;
	}
	net_addr_str((const struct sockaddr *)&cs->bind.ss, abuf,
	    sizeof(abuf));
	/* The new address first: on failure the old one keeps serving. */
	if ((fd = listener_open(&cs->bind)) != -1) {
		listener_set(fd, &cs->bind);
		refresh_set(cs->refresh_ms);
		return 0;
	}
	saved = errno;
	if (saved == EADDRINUSE && S.bound &&
	    net_port((const struct sockaddr *)&S.bind.ss) ==
	    net_port((const struct sockaddr *)&cs->bind.ss)) {
		/*
		 * Same port, overlapping address (0.0.0.0:P -> 127.0.0.1:P):
		 * only possible once the old one is closed. If the new one
		 * still fails, take the old one back.
		 */
		struct conf_addr old = S.bind;

		listener_close();
		if ((fd = listener_open(&cs->bind)) != -1) {
			listener_set(fd, &cs->bind);
			refresh_set(cs->refresh_ms);
			return 0;
		}
		saved = errno;
		if ((fd = listener_open(&old)) != -1)
			listener_set(fd, &old);
		else
			log_error("stats: cannot listen on the previous "
			    "address again; stats are off");
	}
	errno = saved;
	log_warn("stats: reload: cannot listen on %s%s", abuf,
	    S.bound ? " (previous address kept)" : "");
	return -1;
}

void
stats_stop_listening(void)
{
	if (S.c != NULL)
		listener_close();
}

void
stats_stop(void)
{
	struct stats_client *cl;

	if (S.c == NULL)
		return;
	while ((cl = LIST_FIRST(&S.clients)) != NULL)
		client_close(cl);
	listener_close();
	ev_timer_stop(S.c->loop, &S.rate_timer);
	free(S.rates);
	S.rates = NULL;
	S.nrates = 0;
	S.c = NULL;
}
