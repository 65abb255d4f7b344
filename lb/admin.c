/*
 * admin.c - the admin socket: line commands on a unix socket and an
 * optional TCP listener, in the control loop. The socket engine
 * (ctlsock.c) accepts, reads, sends, times out and closes; this file only
 * turns lines into answers:
 *
 *   engine --input--> admin_run() --line--> run_line(): cmdline_split(),
 *                                           cmdline_find() -> cmd_*(),
 *                                           cmdline_frame()
 *          <--answer ending with an empty line--
 *
 * Each client has a bounded input buffer (one line, ADMIN_LINE_MAX); a
 * command runs only while less than ADMIN_OUT_HIGH bytes of earlier
 * answers wait to be sent, so a client that does not read stops being
 * read instead of growing shoal's memory. Commands change the server
 * table through its door, as the config and discovery do (server_join,
 * server_leave, server_set_admin, server_set_weight), so workers see a
 * change at their next pick and health follows through the table.
 */
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ev.h>

#include "config.h"
#include "admin.h"
#include "balance.h"
#include "cidr.h"
#include "clientid.h"
#include "cmdline.h"
#include "control.h"
#include "ctlsock.h"
#include "events.h"
#include "listen.h"
#include "loadweight.h"
#include "log.h"
#include "sbuf.h"
#include "scale.h"
#include "server.h"
#include "signals.h"
#include "stats.h"
#include "worker.h"

#define ADMIN_BACKLOG		16
#define ADMIN_LINGER_S		2.0	/* discard input this long at close */

static struct {
	struct control		*ctl;		/* borrowed, outlives us */
	bool			 running;
	struct ctlsock		 cs;		/* listeners and clients */
	struct ctlsock_listener	*unx;		/* the unix socket, or NULL */
	struct ctlsock_listener	*tcp;		/* the TCP bind, or NULL */
	uint64_t		 commands;	/* lines run */
	uint64_t		 bad_commands;	/* answered with an error */
	double			 idle_s;	/* [admin] timeout */
	struct ctlsock_client	*cur;		/* whose line runs now */
} A;

/* ------------------------------------------------------------------ */
/* Small helpers. */

/* Echo a bad word back in an error message (cmdline_echo). */
static void
put_echo(struct sbuf *out, const char *s, size_t n)
{
	cmdline_echo(out, s, n);
}

/* Append a label for a table cell: one word, "-" when empty. */
static void
put_word(struct sbuf *out, const char *s)
{
	if (*s == '\0') {
		sbuf_puts(out, "-");
		return;
	}
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;

		sbuf_put(out, ch > 0x20 && ch < 0x7f ? s : "_", 1);
	}
}

static int
errorf(struct sbuf *out, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Append "error: ..." and return -1, for `return errorf(...)`. */
static int
errorf(struct sbuf *out, const char *fmt, ...)
{
	char	buf[CONF_ERR_MAX + 128];
	va_list	ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	sbuf_printf(out, "error: %s\n", buf);
	return -1;
}

static const char *
plural(uint32_t n)
{
	return n == 1 ? "" : "s";
}

static bool
valid_server_name(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n >= CONF_NAME_MAX)
		return false;
	for (; *s; s++)
		if (!(*s >= 'a' && *s <= 'z') && !(*s >= 'A' && *s <= 'Z') &&
		    !(*s >= '0' && *s <= '9') && *s != '.' && *s != '_' &&
		    *s != '-')
			return false;
	return true;
}

/*
 * Split "BACKEND/SERVER" and find both. On success *bep and *sp are set
 * (*sp only when sp is not NULL) and 0 is returned; else an error is
 * appended and -1 returned. With sp NULL, the server part is returned in
 * *name (pointing into arg) and need not exist.
 */
static int
find_server(const char *arg, struct backend **bep, struct server **sp,
    const char **name, struct sbuf *out)
{
	char		 bname[CONF_NAME_MAX];
	const char	*slash = strchr(arg, '/');
	struct backend	*be;
	struct server	*s;

	if (slash == NULL || slash == arg || slash[1] == '\0') {
		sbuf_puts(out, "error: bad server '");
		put_echo(out, arg, strlen(arg));
		sbuf_puts(out, "': expected BACKEND/SERVER, e.g. app/s1\n");
		return -1;
	}
	be = NULL;
	if ((size_t)(slash - arg) < sizeof(bname)) {
		memcpy(bname, arg, (size_t)(slash - arg));
		bname[slash - arg] = '\0';
		be = control_backend(A.ctl, bname);
	}
	if (be == NULL) {
		sbuf_puts(out, "error: unknown backend '");
		put_echo(out, arg, (size_t)(slash - arg));
		sbuf_puts(out, "'\n");
		return -1;
	}
	*bep = be;
	if (name != NULL)
		*name = slash + 1;
	if (sp == NULL)
		return 0;
	if ((s = server_find(be, slash + 1)) == NULL) {
		sbuf_printf(out, "error: unknown server %s/", be->name);
		put_echo(out, slash + 1, strlen(slash + 1));
		sbuf_puts(out, "\n");
		return -1;
	}
	*sp = s;
	return 0;
}

/* ------------------------------------------------------------------ */
/* Commands. Each appends its answer (no final empty line) to out and
 * returns 0, or -1 after appending "error: ..." (the table unchanged). */

static const struct cmdline_cmd cmds[];
static const size_t ncmds;

static int
cmd_help(int argc, char **argv, struct sbuf *out)
{
	sbuf_puts(out, "commands (one per line; every answer ends with an "
	    "empty line):\n");
	for (size_t i = 0; i < ncmds; i++)
		sbuf_printf(out, "  %-48s %s\n", cmds[i].usage, cmds[i].help);
	return 0;
}

static int
cmd_show_info(int argc, char **argv, struct sbuf *out)
{
	struct control	*c = A.ctl;
	struct backend	*be;
	size_t		 nservers = 0, nbackends = 0, sclients;
	uint64_t	 srefused, sevicted;
	double		 up = ev_time() - c->started;

	TAILQ_FOREACH(be, &c->backends, entry) {
		nbackends++;
		nservers += be->nservers;
	}
	sbuf_printf(out, "version: %s\n", SHOAL_VERSION);
	sbuf_printf(out, "pid: %ld\n", (long)getpid());
	sbuf_printf(out, "uptime: %.0fs\n", up < 0 ? 0 : up);
	sbuf_printf(out, "state: %s\n", c->stopping ? "stopping" : "running");
	sbuf_printf(out, "threads: %zu\n", c->nworkers);
	sbuf_printf(out, "maxconn: %d\n", atomic_load(&proxy_limits.maxconn));
	sbuf_printf(out, "sessions_active: %" PRIu32 "\n",
	    atomic_load(&proxy_limits.cur));
	sbuf_printf(out, "sessions_total: %" PRIu64 "\n",
	    (uint64_t)atomic_load(&proxy_limits.total));
	sbuf_printf(out, "frontends: %zu\n", c->nfrontends);
	sbuf_printf(out, "backends: %zu\n", nbackends);
	sbuf_printf(out, "servers: %zu\n", nservers);
	sbuf_printf(out, "config: %s\n", c->conf_path != NULL ?
	    c->conf_path : "(embedded default)");
	sbuf_printf(out, "reloads: %u\n", c->reloads);
	sbuf_printf(out, "last_reload_error: %s\n", c->reload_error[0] ?
	    c->reload_error : "-");
	sbuf_printf(out, "admin_clients: %zu\n", A.cs.nclients);
	sbuf_printf(out, "admin_commands: %" PRIu64 "\n", A.commands);
	sbuf_printf(out, "bad_commands: %" PRIu64 "\n", A.bad_commands);
	sbuf_printf(out, "admin_clients_refused: %" PRIu64 "\n", A.cs.refused);
	stats_clients(&sclients, &srefused, &sevicted);
	sbuf_printf(out, "stats_clients: %zu\n", sclients);
	sbuf_printf(out, "stats_clients_refused: %" PRIu64 "\n", srefused);
	sbuf_printf(out, "stats_clients_evicted: %" PRIu64 "\n", sevicted);
	return 0;
}

static void
server_row(struct sbuf *out, const struct server *s, int wname, int waddr)
{
	char	name[2 * CONF_NAME_MAX + 1];
	char	check[48];

	snprintf(name, sizeof(name), "%s/%s", s->be->name, s->name);
	if (s->be->conf.check == CHECK_NONE)
		snprintf(check, sizeof(check), "none");
	else if (s->last_check == 0 || s->check_result[0] == '\0')
		snprintf(check, sizeof(check), "-");
	else
		snprintf(check, sizeof(check), "%s/%.1fms", s->check_result,
		    s->check_duration_ms);
	sbuf_printf(out, "%-*s %-*s %-9s %-8s %6d %5" PRIu32 " %8" PRIu64
	    " %12" PRIu64 " %12" PRIu64 " %9" PRIu64 " %-16s ", wname, name,
	    waddr, s->addrstr, server_source_name(s->source),
	    server_state_name(s), (int)s->weight,
	    atomic_load_explicit(&s->cur, memory_order_relaxed),
	    atomic_load_explicit(&s->total, memory_order_relaxed),
	    atomic_load_explicit(&s->bytes_in, memory_order_relaxed),
	    atomic_load_explicit(&s->bytes_out, memory_order_relaxed),
	    atomic_load_explicit(&s->connect_fail, memory_order_relaxed),
	    check);
	put_word(out, s->label);
	/* The last minute's p95 connect time and time to first byte. */
	for (int k = LAT_CONNECT; k <= LAT_TTFB; k++) {
		struct hist_counts	c;
		double			us;

		signals_server_recent(s, k, &c);
		if ((us = hist_quantile(&c, 0.95)) < 0)
			sbuf_printf(out, " %11s", "-");
		else
			sbuf_printf(out, " %11.3f", us / 1000.0);
	}
	/* The weight balancing uses now, and the last load report. */
	if (s->elig_since == 0)
		sbuf_printf(out, " %10s", "-");
	else
		sbuf_printf(out, " %10.2f", (double)atomic_load_explicit(
		    &s->eff_weight, memory_order_relaxed) / LOADWEIGHT_SCALE);
	if (!s->load_have)
		sbuf_printf(out, " %4s\n", "-");
	else
		sbuf_printf(out, " %4d\n", s->load);
}

static int
cmd_show_servers(int argc, char **argv, struct sbuf *out)
{
	struct backend	*be, *only = NULL;
	struct server	*s;
	int		 wname = 6, waddr = 7;	/* "server", "address" */

	if (argc == 1 && (only = control_backend(A.ctl, argv[0])) == NULL) {
		sbuf_puts(out, "error: unknown backend '");
		put_echo(out, argv[0], strlen(argv[0]));
		sbuf_puts(out, "'\n");
		return -1;
	}
	TAILQ_FOREACH(be, &A.ctl->backends, entry) {
		if (only != NULL && be != only)
			continue;
		TAILQ_FOREACH(s, &be->servers, entry) {
			int n = (int)(strlen(be->name) + 1 + strlen(s->name));

			if (n > wname)
				wname = n;
			if ((n = (int)strlen(s->addrstr)) > waddr)
				waddr = n;
		}
	}
	sbuf_printf(out, "%-*s %-*s %-9s %-8s %6s %5s %8s %12s %12s %9s %-16s "
	    "%s %11s %11s %10s %4s\n", wname, "server", waddr, "address",
	    "source", "state", "weight", "cur", "total", "bytes_in",
	    "bytes_out", "conn_fail", "check", "label", "conn_p95_ms",
	    "ttfb_p95_ms", "eff_weight", "load");
	TAILQ_FOREACH(be, &A.ctl->backends, entry) {
		if (only != NULL && be != only)
			continue;
		TAILQ_FOREACH(s, &be->servers, entry)
			server_row(out, s, wname, waddr);
	}
	return 0;
}

static int
cmd_show_stat_json(int argc, char **argv, struct sbuf *out)
{
	stats_json(A.ctl, out);
	return 0;
}

static void
discovery_row(const struct discovery_entry_info *e, void *arg)
{
	struct sbuf *out = arg;

	sbuf_printf(out, "%-12s %-23s %016" PRIx64 " %10" PRIu32 " %7.1fs "
	    "%7" PRIu32 "ms %7.1fs %-8s ", e->backend, e->name, e->instance,
	    e->seq, e->age_s, e->ttl_ms, e->expires_s, e->state);
	put_word(out, e->label);
	sbuf_puts(out, "\n");
}

static int
cmd_show_events(int argc, char **argv, struct sbuf *out)
{
	size_t	 n = events_count(), from = 0;
	long	 want;

	if (argc == 1) {
		char *end;

		errno = 0;
		want = strtol(argv[0], &end, 10);
		if (*end != '\0' || end == argv[0] || errno != 0 || want < 1 ||
		    want > EVENTS_MAX) {
			sbuf_printf(out, "error: show events: N must be 1-%d\n",
			    EVENTS_MAX);
			return -1;
		}
		if ((size_t)want < n)
			from = n - (size_t)want;
	}
	sbuf_printf(out, "%-6s %-24s %-8s %-24s %s\n", "seq", "time", "kind",
	    "where", "what");
	for (size_t i = from; i < n; i++) {
		const struct event	*e = events_get(i);
		time_t			 t = (time_t)e->at;
		struct tm		 tm;
		char			 ts[40], where[140];

		gmtime_r(&t, &tm);
		strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
		snprintf(ts + strlen(ts), sizeof(ts) - strlen(ts), ".%03dZ",
		    (int)((e->at - (double)t) * 1000) % 1000);
		snprintf(where, sizeof(where), "%s%s%s",
		    e->backend[0] ? e->backend : "-", e->server[0] ? "/" : "",
		    e->server);
		sbuf_printf(out, "%-6llu %-24s %-8s %-24s %s\n",
		    (unsigned long long)e->seq, ts, events_kind_name(e->kind),
		    where, e->text);
	}
	return 0;
}

static int
cmd_show_discovery(int argc, char **argv, struct sbuf *out)
{
	const struct discovery_view	*dv = A.ctl->discovery;
	uint64_t			 n[DISCOVERY_VERDICTS_MAX];

	sbuf_printf(out, "%-12s %-23s %-16s %10s %8s %9s %8s %-8s %s\n",
	    "pool", "address", "instance", "seq", "age", "ttl", "expires",
	    "state", "label");
	if (dv != NULL) {
		dv->foreach(discovery_row, out);
		dv->counters(n);
	}
	sbuf_puts(out, "verdicts:");
	for (int i = 0; dv != NULL && i < dv->nverdicts; i++)
		sbuf_printf(out, " %s=%" PRIu64, dv->verdict_name(i), n[i]);
	sbuf_puts(out, "\n");
	return 0;
}

/* ------------------------------------------------------------------ */
/* report: a Markdown snapshot to hand in or paste into a ticket. */

/* Text for a Markdown table cell: no '|', no newline. */
static void
md_cell(struct sbuf *out, const char *s)
{
	for (; *s != '\0'; s++)
		sbuf_printf(out, "%c", *s == '|' ? '/' : (unsigned char)*s <
		    0x20 ? ' ' : *s);
}

static void
md_p95(struct sbuf *out, const struct hist_counts *c)
{
	double us = hist_quantile(c, 0.95);

	if (us < 0)
		sbuf_puts(out, "-");
	else
		sbuf_printf(out, "%.1f ms", us / 1000.0);
}

static void
md_announcement(const struct discovery_entry_info *e, void *arg)
{
	struct sbuf *out = arg;

	sbuf_puts(out, "| ");
	md_cell(out, e->backend);
	sbuf_puts(out, " | ");
	md_cell(out, e->name);
	sbuf_printf(out, " | %s | %.1f s | ", e->state, e->age_s);
	md_cell(out, e->label);
	sbuf_puts(out, " |\n");
}

static int
cmd_report(int argc, char **argv, struct sbuf *out)
{
	struct control			*c = A.ctl;
	const struct discovery_view	*dv = c->discovery;
	struct backend			*be;
	struct server			*s;
	struct sbuf			 info;
	char				 host[256] = "", ts[40];
	time_t				 now = time(NULL);
	struct tm			 tm;
	size_t				 n, from, mark;
	uint64_t			 dc[DISCOVERY_VERDICTS_MAX];

	(void)argc;
	(void)argv;
	(void)gethostname(host, sizeof(host) - 1);
	gmtime_r(&now, &tm);
	strftime(ts, sizeof(ts), "%Y-%m-%d %H:%M:%S UTC", &tm);
	sbuf_printf(out, "# shoal report: %s, %s\n \n## Info\n \n| | |\n"
	    "| --- | --- |\n", host, ts);
	sbuf_init(&info);
	cmd_show_info(0, NULL, &info);
	for (char *l = info.data, *nl; l != NULL && *l != '\0'; l = nl) {
		char *colon;

		if ((nl = strchr(l, '\n')) != NULL)
			*nl++ = '\0';
		if ((colon = strstr(l, ": ")) == NULL)
			continue;
		*colon = '\0';
		sbuf_puts(out, "| ");
		md_cell(out, l);
		sbuf_puts(out, " | ");
		md_cell(out, colon + 2);
		sbuf_puts(out, " |\n");
	}
	sbuf_free(&info);
	sbuf_puts(out, " \n## Backends\n");
	TAILQ_FOREACH(be, &c->backends, entry) {
		struct hist_counts	hc;
		size_t			up = 0;

		TAILQ_FOREACH(s, &be->servers, entry)
			if (server_eligible(s))
				up++;
		sbuf_printf(out, " \n### %s\n \nbalance %s, check %s, %zu of %zu "
		    "servers taking sessions", be->name,
		    conf_balance_name(be->conf.balance),
		    conf_check_name(be->conf.check), up, be->nservers);
		signals_backend_recent(be, LAT_TTFB, &hc);
		sbuf_puts(out, "; last minute: TTFB p95 ");
		md_p95(out, &hc);
		signals_queue_recent(be, &hc);
		sbuf_puts(out, ", queue p95 ");
		md_p95(out, &hc);
		if (be->scale != NULL)
			sbuf_printf(out, "; scale: %s",
			    be->scale->wanted > 0 ? "up wanted" :
			    be->scale->wanted < 0 ? "down wanted" : "steady");
		sbuf_puts(out, ".\n \n| server | address | source | state | "
		    "weight | effective | active | total | connect failures | "
		    "last check | TTFB p95 | fault |\n| --- | --- | --- | --- | "
		    "--: | --: | --: | --: | --: | --- | --: | --- |\n");
		TAILQ_FOREACH(s, &be->servers, entry) {
			int f = atomic_load(&s->fault);

			sbuf_puts(out, "| ");
			md_cell(out, s->name);
			sbuf_printf(out, " | %s | %s | %s | %d | ", s->addrstr,
			    server_source_name(s->source),
			    server_state_name(s), (int)s->weight);
			if (s->elig_since == 0)
				sbuf_puts(out, "-");
			else
				sbuf_printf(out, "%.2f", (double)atomic_load(
				    &s->eff_weight) / LOADWEIGHT_SCALE);
			sbuf_printf(out, " | %" PRIu32 " | %" PRIu64 " | %"
			    PRIu64 " | ", atomic_load(&s->cur),
			    (uint64_t)atomic_load(&s->total),
			    (uint64_t)atomic_load(&s->connect_fail));
			if (be->conf.check == CHECK_NONE)
				sbuf_puts(out, "none");
			else if (s->check_result[0] == '\0')
				sbuf_puts(out, "-");
			else {
				md_cell(out, s->check_result);
				if (s->check_detail[0] != '\0') {
					sbuf_puts(out, " ");
					md_cell(out, s->check_detail);
				}
			}
			sbuf_puts(out, " | ");
			signals_server_recent(s, LAT_TTFB, &hc);
			md_p95(out, &hc);
			sbuf_printf(out, " | %s |\n", f == FAULT_NONE ? "" :
			    server_fault_name((enum server_fault)f));
		}
	}
	sbuf_puts(out, " \n## Discovery\n \n");
	if (dv == NULL)
		sbuf_puts(out, "Off.\n");
	else {
		dv->counters(dc);
		sbuf_puts(out, "Datagrams by verdict:");
		for (int i = 0; i < dv->nverdicts; i++)
			sbuf_printf(out, " %s %" PRIu64 "%s", dv->verdict_name(i),
			    dc[i], i + 1 < dv->nverdicts ? "," : ".");
		mark = out->len;
		dv->foreach(md_announcement, out);
		if (out->len == mark)
			sbuf_puts(out, "\n \nNo announced server.\n");
		else {
			/* The rows first, then the head in front of them. */
			static const char head[] = "\n \n| pool | server | "
			    "state | last heard | label |\n| --- | --- | --- | "
			    "--: | --- |\n";
			size_t rows = out->len - mark;

			sbuf_puts(out, head);
			if (!sbuf_failed(out)) {
				memmove(out->data + mark + sizeof(head) - 1,
				    out->data + mark, rows);
				memcpy(out->data + mark, head, sizeof(head) - 1);
			}
		}
	}
	n = events_count();
	from = n > 30 ? n - 30 : 0;
	sbuf_printf(out, " \n## Recent events (%zu of %zu kept)\n \n| time (UTC) "
	    "| kind | where | what |\n| --- | --- | --- | --- |\n", n - from,
	    n);
	for (size_t i = from; i < n; i++) {
		const struct event	*e = events_get(i);
		time_t			 t = (time_t)e->at;

		gmtime_r(&t, &tm);
		strftime(ts, sizeof(ts), "%H:%M:%S", &tm);
		sbuf_printf(out, "| %s | %s | ", ts,
		    events_kind_name(e->kind));
		md_cell(out, e->backend);
		if (e->server[0] != '\0') {
			sbuf_puts(out, "/");
			md_cell(out, e->server);
		}
		sbuf_puts(out, " | ");
		md_cell(out, e->text);
		sbuf_puts(out, " |\n");
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* explain ADDR[:PORT] [FRONTEND]: where a new connection would go now. */

/* "10.0.0.5", "10.0.0.5:4000", "::1", "[::1]:4000" -> ss. 0 or -1. */
static int
parse_client(const char *arg, struct sockaddr_storage *ss)
{
	struct sockaddr_in	*sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6	*sin6 = (struct sockaddr_in6 *)ss;
	struct conf_addr	 a;
	const char		*why;

	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, arg, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons(40000);
		return 0;
	}
	if (inet_pton(AF_INET6, arg, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(40000);
		return 0;
	}
	if (conf_parse_addr(arg, &a, &why) == -1)
		return -1;
	memcpy(ss, &a.ss, a.len);
	return 0;
}

/* Why s does not take a new session now, or NULL if it could. */
static const char *
not_eligible(const struct server *s, char *buf, size_t len)
{
	if (!s->in_table)
		return "leaving the table";
	if (s->admin == ADM_MAINT)
		return "maint (admin): no new sessions, not checked";
	if (s->admin == ADM_DRAIN)
		return "draining (admin): no new sessions";
	if (!s->announce_up)
		return "draining (announced): no new sessions";
	if (s->health == HEALTH_DOWN) {
		snprintf(buf, len, "down%s%s%s", s->check_result[0] ? " (" : "",
		    s->check_result, s->check_result[0] ? ")" : "");
		return buf;
	}
	if (s->health == HEALTH_CHECKING)
		return "checking: not up yet (rise)";
	if (s->weight == 0)
		return "weight 0: no new sessions";
	return NULL;
}

static int
cmd_explain(int argc, char **argv, struct sbuf *out)
{
	struct control		*c = A.ctl;
	struct sockaddr_storage	 ss;
	struct frontend		*fe = NULL;
	struct client_policy	*pol;
	struct backend		*be;
	struct server		*s, *pick;
	struct pool		*p;
	char			 abuf[NET_ADDRSTRLEN], why[160];
	bool			 backup, any_primary = false;
	uint32_t		 h;

	if (parse_client(argv[0], &ss) == -1) {
		sbuf_puts(out, "error: bad client address '");
		put_echo(out, argv[0], strlen(argv[0]));
		sbuf_puts(out, "': expected ADDR or ADDR:PORT, e.g. 10.0.0.5 "
		    "or [2001:db8::5]:40000\n");
		return -1;
	}
	for (size_t i = 0; i < c->nfrontends; i++)
		if (argc < 2 || strcmp(c->frontends[i]->name, argv[1]) == 0) {
			fe = c->frontends[i];
			break;
		}
	if (fe == NULL) {
		sbuf_puts(out, "error: unknown frontend '");
		put_echo(out, argv[1], strlen(argv[1]));
		sbuf_puts(out, "'\n");
		return -1;
	}
	be = atomic_load(&fe->backend);
	sbuf_printf(out, "client %s -> frontend %s -> backend %s (balance %s)"
	    "\n", net_addr_str((struct sockaddr *)&ss, abuf, sizeof(abuf)),
	    fe->name, be->name, conf_balance_name(be->conf.balance));
	pol = atomic_load(&fe->policy);
	if (pol != NULL && pol->deny != NULL &&
	    cidr_set_match(pol->deny, (struct sockaddr *)&ss))
		sbuf_puts(out, "refused: the address is in the frontend's "
		    "deny list (PA)\n");
	else if (pol != NULL && pol->allow != NULL &&
	    !cidr_set_empty(pol->allow) &&
	    !cidr_set_match(pol->allow, (struct sockaddr *)&ss))
		sbuf_puts(out, "refused: the address is not in the frontend's "
		    "allow list (PA)\n");
	else if (pol != NULL && pol->proxy_from != NULL &&
	    !cidr_set_empty(pol->proxy_from))
		sbuf_puts(out, "note: accept_proxy: for clients behind a proxy "
		    "listed there, the address of the PROXY header counts\n");
	if (atomic_load(&fe->routes) != NULL)
		sbuf_printf(out, "note: this frontend routes by TLS SNI; "
		    "without a matching route the client goes to backend "
		    "%s, as shown\n", be->name);
	p = backend_pool(be);
	pick = balance_peek(p, (struct sockaddr *)&ss, &backup);
	if (pick == NULL)
		sbuf_printf(out, "pick: none now: %s\n", p->primary.n +
		    p->backup.n == 0 ? "no server is eligible; the client "
		    "would wait up to timeout_queue for one, then be closed "
		    "(SC)" : "every eligible server is at its maxconn; the "
		    "client would wait up to timeout_queue (then sQ)");
	else
		sbuf_printf(out, "pick: %s/%s%s\n", be->name, pick->name,
		    backup ? " (a backup: no primary server is eligible)" :
		    "");
	switch (be->conf.balance) {
	case BALANCE_ROUNDROBIN:
		sbuf_printf(out, "how: roundrobin: the next turn of the "
		    "weighted sequence (turn %llu), skipping full servers; "
		    "the next new session from any client takes it\n",
		    (unsigned long long)atomic_load(&be->rr));
		break;
	case BALANCE_LEASTCONN:
		sbuf_puts(out, "how: leastconn: the fewest active sessions "
		    "per unit of effective weight; ties rotate\n");
		break;
	case BALANCE_SOURCE:
		h = balance_addr_hash((struct sockaddr *)&ss);
		sbuf_printf(out, "how: source: the owner of the address's "
		    "point on the hash ring (hash %08x), or the next server "
		    "on the ring if it is full; the same client keeps its "
		    "server while the pool does not change\n", h);
		break;
	case BALANCE_RANDOM:
		sbuf_puts(out, "how: random: two servers drawn by weight, the "
		    "less loaded wins: the pick above is one possible outcome"
		    "\n");
		break;
	case BALANCE_FIRST:
		sbuf_puts(out, "how: first: the first server in table order "
		    "with a free slot (maxconn)\n");
		break;
	}
	sbuf_puts(out, "servers:\n");
	TAILQ_FOREACH(s, &be->servers, entry)
		if (!s->backup && server_eligible(s))
			any_primary = true;
	TAILQ_FOREACH(s, &be->servers, entry) {
		const char	*no = not_eligible(s, why, sizeof(why));
		uint32_t	 cur = atomic_load(&s->cur);
		double		 eff = (double)atomic_load(&s->eff_weight) /
				    LOADWEIGHT_SCALE;

		sbuf_printf(out, "  %-20s ", s->name);
		if (s == pick)
			sbuf_puts(out, "<- picked");
		else if (no != NULL)
			sbuf_printf(out, "not eligible: %s", no);
		else if (s->maxconn > 0 && cur >= (uint32_t)s->maxconn)
			sbuf_printf(out, "full: %" PRIu32 "/%d sessions "
			    "(maxconn)", cur, s->maxconn);
		else if (s->backup && any_primary)
			sbuf_puts(out, "backup: used only when no primary "
			    "server is eligible");
		else {
			switch (be->conf.balance) {
			case BALANCE_ROUNDROBIN:
				sbuf_puts(out, "eligible: not this turn");
				break;
			case BALANCE_LEASTCONN:
				sbuf_printf(out, "eligible: more loaded "
				    "(%" PRIu32 " active / weight %.2f)", cur,
				    eff);
				break;
			case BALANCE_SOURCE:
				sbuf_puts(out, "eligible: not the ring owner "
				    "of this address");
				break;
			case BALANCE_RANDOM:
				sbuf_puts(out, "eligible: could be drawn");
				break;
			case BALANCE_FIRST:
				sbuf_puts(out, "eligible: after the picked one "
				    "in table order");
				break;
			}
		}
		if (no == NULL)
			sbuf_printf(out, " [%" PRIu32 " active, weight %d, "
			    "effective %.2f]", cur, (int)s->weight, eff);
		if (atomic_load(&s->fault) != FAULT_NONE)
			sbuf_printf(out, " [FAULT %s]", server_fault_name(
			    (enum server_fault)atomic_load(&s->fault)));
		sbuf_puts(out, "\n");
	}
	return 0;
}

/* set server B/S fault delay D | reset | blackhole | none */
static int
set_fault(int argc, char **argv, struct sbuf *out)
{
	struct backend		*be;
	struct server		*s;
	enum server_fault	 f;
	uint32_t		 d = 0;
	const char		*why;

	if (strcmp(argv[2], "delay") == 0 && argc == 4) {
		if (conf_parse_duration(argv[3], &d, &why) == -1 || d == 0 ||
		    d > 600000) {
			sbuf_puts(out, "error: bad delay '");
			put_echo(out, argv[3], strlen(argv[3]));
			sbuf_puts(out, "': expected a duration with a unit, "
			    "1ms to 10m, e.g. 200ms\n");
			return -1;
		}
		f = FAULT_DELAY;
	} else if (argc == 3 && strcmp(argv[2], "reset") == 0)
		f = FAULT_RESET;
	else if (argc == 3 && strcmp(argv[2], "blackhole") == 0)
		f = FAULT_BLACKHOLE;
	else if (argc == 3 && strcmp(argv[2], "none") == 0)
		f = FAULT_NONE;
	else
		return errorf(out, "usage: set server BACKEND/SERVER fault "
		    "delay D|reset|blackhole|none");
	if (find_server(argv[0], &be, &s, NULL, out) == -1)
		return -1;
	server_set_fault(s, f, d);
	if (f == FAULT_NONE)
		sbuf_printf(out, "ok: %s/%s: no fault\n", be->name, s->name);
	else if (f == FAULT_DELAY)
		sbuf_printf(out, "ok: %s/%s: new sessions wait %" PRIu32 "ms "
		    "once connected\n", be->name, s->name, d);
	else
		sbuf_printf(out, "ok: %s/%s: new sessions' connects %s\n",
		    be->name, s->name, f == FAULT_RESET ? "fail at once "
		    "(refused)" : "never complete (timeout_connect)");
	return 0;
}

static int
cmd_set_server(int argc, char **argv, struct sbuf *out)
{
	struct backend	*be;
	struct server	*s;
	const char	*why;
	long		 w;
	uint32_t	 cur;

	if (strcmp(argv[1], "fault") == 0)
		return set_fault(argc, argv, out);
	if ((strcmp(argv[1], "state") != 0 && strcmp(argv[1], "weight") != 0)
	    || argc != 3)
		return errorf(out, "usage: set server BACKEND/SERVER state "
		    "ready|drain|maint, or set server BACKEND/SERVER weight N, "
		    "or set server BACKEND/SERVER fault delay D|reset|"
		    "blackhole|none");
	if (find_server(argv[0], &be, &s, NULL, out) == -1)
		return -1;
	if (strcmp(argv[1], "state") == 0) {
		enum server_admin	 a;
		const char		*was = server_state_name(s);

		if (strcmp(argv[2], "ready") == 0)
			a = ADM_READY;
		else if (strcmp(argv[2], "drain") == 0)
			a = ADM_DRAIN;
		else if (strcmp(argv[2], "maint") == 0)
			a = ADM_MAINT;
		else {
			sbuf_puts(out, "error: bad state '");
			put_echo(out, argv[2], strlen(argv[2]));
			sbuf_puts(out, "': expected ready, drain or maint\n");
			return -1;
		}
		if (s->admin == a) {
			sbuf_printf(out, "ok: %s/%s is %s already (state %s)\n",
			    be->name, s->name, argv[2], was);
			return 0;
		}
		server_set_admin(s, a, "admin");
		cur = atomic_load(&s->cur);
		sbuf_printf(out, "ok: %s/%s %s -> %s (%" PRIu32 " active "
		    "session%s)\n", be->name, s->name, was,
		    server_state_name(s), cur, plural(cur));
		return 0;
	}
	if (conf_parse_int(argv[2], 0, 256, &w, &why) == -1) {
		sbuf_puts(out, "error: bad weight '");
		put_echo(out, argv[2], strlen(argv[2]));
		sbuf_printf(out, "': %s (0 to 256)\n", why);
		return -1;
	}
	if (s->weight != (int)w) {
		sbuf_printf(out, "ok: %s/%s weight %d -> %ld\n", be->name,
		    s->name, (int)s->weight, w);
		server_set_weight(s, (int)w, "admin");
	} else
		sbuf_printf(out, "ok: %s/%s weight is %ld already\n", be->name,
		    s->name, w);
	return 0;
}

static int
cmd_add_server(int argc, char **argv, struct sbuf *out)
{
	struct backend		*be;
	struct server		*s;
	struct conf_addr	 a;
	struct server_spec	 spec = { 0 };
	const struct conf_addr	*loop;
	const char		*name, *why;
	long			 weight = 1, maxconn = 0;
	bool			 backup = false, seen_w = false, seen_m = false;

	if (find_server(argv[0], &be, NULL, &name, out) == -1)
		return -1;
	if (!valid_server_name(name)) {
		sbuf_puts(out, "error: bad server name '");
		put_echo(out, name, strlen(name));
		sbuf_puts(out, "': expected 1 to 63 of A-Z a-z 0-9 . _ -\n");
		return -1;
	}
	if ((s = server_find(be, name)) != NULL)
		return errorf(out, "server %s/%s exists (%s, %s): delete it "
		    "first (del server %s/%s)", be->name, s->name, s->addrstr,
		    server_source_name(s->source), be->name, s->name);
	memset(&a, 0, sizeof(a));
	if (conf_parse_addr(argv[1], &a, &why) == -1 ||
	    conf_check_server_addr(&a, &why) == -1) {
		sbuf_puts(out, "error: bad address '");
		put_echo(out, argv[1], strlen(argv[1]));
		sbuf_printf(out, "': %s (expected IPv4:PORT or [IPv6]:PORT)\n",
		    why);
		return -1;
	}
	if ((loop = server_addr_loops(A.ctl->conf,
	    (const struct sockaddr *)&a.ss)) != NULL)
		return errorf(out, "%s is shoal's own listen address (bind at "
		    "%s:%d): every session would loop", argv[1],
		    A.ctl->conf->file, loop->line);
	for (int i = 2; i < argc; i++) {
		char	*eq = strchr(argv[i], '=');
		bool	 isw = eq != NULL && eq - argv[i] == 6 &&
			    strncmp(argv[i], "weight", 6) == 0;
		bool	 ism = eq != NULL && eq - argv[i] == 7 &&
			    strncmp(argv[i], "maxconn", 7) == 0;

		if (strcmp(argv[i], "backup") == 0 && !backup) {
			backup = true;
		} else if (isw && !seen_w) {
			seen_w = true;
			if (conf_parse_int(eq + 1, 0, 256, &weight,
			    &why) == -1) {
				sbuf_puts(out, "error: bad weight '");
				put_echo(out, eq + 1, strlen(eq + 1));
				sbuf_printf(out, "': %s (0 to 256)\n", why);
				return -1;
			}
		} else if (ism && !seen_m) {
			seen_m = true;
			if (conf_parse_int(eq + 1, 0, 1000000, &maxconn,
			    &why) == -1) {
				sbuf_puts(out, "error: bad maxconn '");
				put_echo(out, eq + 1, strlen(eq + 1));
				sbuf_printf(out, "': %s (0 to 1000000)\n", why);
				return -1;
			}
		} else {
			sbuf_puts(out, "error: bad option '");
			put_echo(out, argv[i], strlen(argv[i]));
			sbuf_puts(out, "': expected weight=N, maxconn=N or "
			    "backup, each at most once\n");
			return -1;
		}
	}
	spec.name = name;
	spec.addr = (struct sockaddr *)&a.ss;
	spec.addrlen = a.len;
	spec.weight = (int)weight;
	spec.maxconn = (int)maxconn;
	spec.backup = backup;
	if ((s = server_join(be, &spec, SRC_ADMIN)) == NULL)
		return errorf(out, "cannot add %s/%s: %s", be->name, name,
		    strerror(errno));
	log_info("server %s/%s: added (admin: %s, weight %ld%s%s)", be->name,
	    s->name, s->addrstr, weight, maxconn ? ", maxconn" : "",
	    backup ? ", backup" : "");
	sbuf_printf(out, "ok: %s/%s added (%s, weight %ld, %s)\n", be->name,
	    s->name, s->addrstr, weight, server_state_name(s));
	return 0;
}

static int
cmd_del_server(int argc, char **argv, struct sbuf *out)
{
	struct backend	*be;
	struct server	*s;
	uint32_t	 cur;
	char		 name[CONF_NAME_MAX];

	if (find_server(argv[0], &be, &s, NULL, out) == -1)
		return -1;
	cur = atomic_load(&s->cur);
	if (s->admin == ADM_READY && cur > 0)
		return errorf(out, "%s/%s has %" PRIu32 " active session%s: "
		    "drain it first (set server %s/%s state drain)", be->name,
		    s->name, cur, plural(cur), be->name, s->name);
	snprintf(name, sizeof(name), "%s", s->name);
	log_info("server %s/%s: removed (admin; %" PRIu32 " sessions finish "
	    "on it)", be->name, name, cur);
	/* The pool and the sessions keep their references: it leaves
	 * selection now and is freed by the last session. */
	server_leave(s);
	sbuf_printf(out, "ok: %s/%s removed (%" PRIu32 " active session%s "
	    "finish%s on it)\n", be->name, name, cur, plural(cur),
	    cur == 1 ? "es" : "");
	return 0;
}

static int
cmd_shutdown_sessions(int argc, char **argv, struct sbuf *out)
{
	struct backend	*be;
	struct server	*s;
	uint32_t	 cur;

	if (find_server(argv[0], &be, &s, NULL, out) == -1)
		return -1;
	cur = atomic_load(&s->cur);
	if (workers_kill_server(A.ctl->workers, A.ctl->nworkers, s) == -1)
		return errorf(out, "cannot reach the workers: %s",
		    strerror(errno));
	log_info("server %s/%s: closing its %" PRIu32 " session%s (admin)",
	    be->name, s->name, cur, plural(cur));
	sbuf_printf(out, "ok: closing %" PRIu32 " session%s of %s/%s\n", cur,
	    plural(cur), be->name, s->name);
	return 0;
}

static int
cmd_reload(int argc, char **argv, struct sbuf *out)
{
	struct control *c = A.ctl;

	if (c->stopping)
		return errorf(out, "shoal is stopping: no reload");
	if (c->conf_path == NULL)
		return errorf(out, "running the embedded default "
		    "configuration: nothing to reload");
	log_info("admin: reload requested");
	if (control_reload(c) == -1)
		return errorf(out, "reload refused: %s; still running the "
		    "previous configuration", c->reload_error);
	sbuf_printf(out, "ok: reloaded %s (reload %u)\n", c->conf_path,
	    c->reloads);
	return 0;
}

/*
 * The hand-over (shoal -x): one line per frontend listening socket, each
 * socket passed (SCM_RIGHTS) along the answer by the engine
 * (ctlsock_pass). Unix clients only: the file mode of the socket is what
 * guards it.
 */
static int
cmd_get_listeners(int argc, char **argv, struct sbuf *out)
{
	struct ctlsock_client	 *c = A.cur;
	struct control		 *ctl = A.ctl;
	const struct conf_addr	**binds = NULL;
	const char		**names = NULL;
	size_t			 *which = NULL, nb = 0, k = 0;
	int			 *fds = NULL, n, nfd = 0;
	char			  abuf[NET_ADDRSTRLEN];

	if (c == NULL || !c->is_unix)
		return errorf(out, "get listeners: only over the unix socket");
	if (ctl->stopping)
		return errorf(out, "shoal is stopping: its listeners are "
		    "closed");
	if (!ctlsock_can_pass(c))
		return errorf(out, "get listeners: sockets still in flight");
	for (size_t i = 0; i < ctl->nfrontends; i++)
		nb += ctl->frontends[i]->nbinds;
	binds = calloc(nb ? nb : 1, sizeof(*binds));
	names = calloc(nb ? nb : 1, sizeof(*names));
	which = calloc(LISTEN_FDS_MAX, sizeof(*which));
	fds = calloc(LISTEN_FDS_MAX, sizeof(*fds));
	if (binds == NULL || names == NULL || which == NULL || fds == NULL) {
		n = errorf(out, "out of memory");
		goto done;
	}
	for (size_t i = 0; i < ctl->nfrontends; i++)
		for (size_t j = 0; j < ctl->frontends[i]->nbinds; j++) {
			names[k] = ctl->frontends[i]->name;
			binds[k++] = &ctl->frontends[i]->binds[j];
		}
	if ((nfd = listen_export(binds, nb, fds, which, LISTEN_FDS_MAX)) ==
	    -1) {
		nfd = 0;
		n = errorf(out, "get listeners: %s", strerror(errno));
		goto done;
	}
	for (int i = 0; i < nfd; i++)
		sbuf_printf(out, "listener %s %s\n", names[which[i]],
		    net_addr_str((const struct sockaddr *)&binds[which[i]]->ss,
		    abuf, sizeof(abuf)));
	sbuf_printf(out, "pid %ld\n", (long)getpid());
	/* No socket goes with an answer that could not be written whole. */
	if (sbuf_failed(out)) {
		n = -1;
		goto done;
	}
	if (ctlsock_pass(c, fds, (size_t)nfd) == -1) {
		n = errorf(out, "get listeners: %s", strerror(errno));
		goto done;
	}
	log_info("admin: handing over %d listening socket%s", nfd, plural(
	    (uint32_t)nfd));
	fds = NULL;		/* the engine's now */
	nfd = 0;
	n = 0;
done:
	for (int i = 0; i < nfd; i++)
		net_close(fds[i]);
	free(binds);
	free(names);
	free(which);
	free(fds);
	return n;
}

static int
cmd_stop(int argc, char **argv, struct sbuf *out)
{
	struct control *c = A.ctl;

	sbuf_printf(out, "ok: stopping: %u session%s finish within %ums "
	    "(pid %ld)\n", atomic_load(&proxy_limits.cur),
	    plural(atomic_load(&proxy_limits.cur)), c->conf->global.grace_ms,
	    (long)getpid());
	control_stop(c, "admin stop");
	return 0;
}

static int
cmd_quit(int argc, char **argv, struct sbuf *out)
{
	sbuf_puts(out, "bye\n");
	return 0;
}

static const struct cmdline_cmd cmds[] = {
	{ { "help" }, 1, 0, 0, "help",
	  "this list", cmd_help },
	{ { "show", "info" }, 2, 0, 0, "show info",
	  "version, uptime, sessions, reloads, counters", cmd_show_info },
	{ { "show", "servers" }, 2, 0, 1, "show servers [BACKEND]",
	  "the server table", cmd_show_servers },
	{ { "show", "stat", "json" }, 3, 0, 0, "show stat json",
	  "the stats document (/stats.json)", cmd_show_stat_json },
	{ { "show", "discovery" }, 2, 0, 0, "show discovery",
	  "announcement entries and verdict counters", cmd_show_discovery },
	{ { "report" }, 1, 0, 0, "report",
	  "a Markdown snapshot: info, backends, discovery, recent events",
	  cmd_report },
	{ { "explain" }, 1, 1, 2, "explain ADDR[:PORT] [FRONTEND]",
	  "which server a new connection from there gets now, and why not "
	  "the others", cmd_explain },
	{ { "show", "events" }, 2, 0, 1, "show events [N]",
	  "the last N (default all kept) events, oldest first",
	  cmd_show_events },
	{ { "set", "server" }, 2, 3, 3,
	  "set server B/S state ready|drain|maint", "admin state",
	  cmd_set_server },
	{ { "set", "server" }, 2, 3, 3, "set server B/S weight N",
	  "weight 0..256 (0: no new sessions)", cmd_set_server },
	{ { "set", "server" }, 2, 3, 4,
	  "set server B/S fault delay D|reset|blackhole|none",
	  "inject a fault into its new sessions (teaching)", cmd_set_server },
	{ { "add", "server" }, 2, 2, 5,
	  "add server B/S ADDR:PORT [weight=N] [maxconn=N] [backup]",
	  "new server, checked", cmd_add_server },
	{ { "del", "server" }, 2, 1, 1, "del server B/S",
	  "remove (drain it first if it has sessions)", cmd_del_server },
	{ { "shutdown", "sessions", "server" }, 3, 1, 1,
	  "shutdown sessions server B/S", "close its sessions (RST)",
	  cmd_shutdown_sessions },
	{ { "reload" }, 1, 0, 0, "reload",
	  "re-read the config file (as SIGHUP)", cmd_reload },
	{ { "get", "listeners" }, 2, 0, 0, "get listeners",
	  "pass the listening sockets (shoal -x; unix socket only)",
	  cmd_get_listeners },
	{ { "stop" }, 1, 0, 0, "stop",
	  "stop accepting, drain for grace, exit (as SIGTERM)", cmd_stop },
	{ { "quit" }, 1, 0, 0, "quit",
	  "close this connection", cmd_quit },
};
static const size_t ncmds = sizeof(cmds) / sizeof(cmds[0]);

/*
 * Run one command line (len bytes, no LF; line[len] is writable) and
 * append its answer, ending with the empty line, to out: tokenise,
 * dispatch, frame. Returns true if the connection should close after the
 * answer (quit).
 */
static bool
run_line(char *line, size_t len, struct sbuf *out)
{
	char				*argv[CMDLINE_ARGS_MAX + 1];
	const struct cmdline_cmd	*cmd = NULL;
	struct sbuf			 ans;
	char				 text[EVENTS_TEXT];
	int				 argc, rc = -1;

	A.commands++;
	sbuf_init(&ans);
	snprintf(text, sizeof(text), "%.*s", (int)len, line);
	argc = cmdline_split(line, len, argv, CMDLINE_ARGS_MAX, &ans);
	if (argc != -1 &&
	    (cmd = cmdline_find(cmds, ncmds, argc, argv, &ans)) != NULL)
		rc = cmd->fn(argc - cmd->nwords, argv + cmd->nwords, &ans);
	/* What changed something goes to the timeline. */
	if (rc == 0 && cmd != NULL && (strcmp(cmd->words[0], "set") == 0 ||
	    strcmp(cmd->words[0], "add") == 0 ||
	    strcmp(cmd->words[0], "del") == 0 ||
	    strcmp(cmd->words[0], "shutdown") == 0 ||
	    strcmp(cmd->words[0], "reload") == 0 ||
	    strcmp(cmd->words[0], "stop") == 0))
		events_add(EV_KIND_ADMIN, NULL, NULL, "%s", text);
	if (sbuf_failed(&ans)) {
		sbuf_free(&ans);
		sbuf_puts(&ans, "error: out of memory\n");
		rc = -1;
	}
	if (rc == -1)
		A.bad_commands++;
	cmdline_frame(&ans, out);
	sbuf_free(&ans);
	return cmd != NULL && cmd->fn == cmd_quit;
}

/* ------------------------------------------------------------------ */
/* Clients: the socket engine calls admin_run() with their input. */

/* True if the input holds a line to run (the last one may lack its LF). */
static bool
line_ready(struct ctlsock_client *cl)
{
	size_t	 inlen;
	char	*in = ctlsock_in(cl, &inlen);

	return memchr(in, '\n', inlen) != NULL || inlen == ADMIN_LINE_MAX ||
	    (cl->eof && inlen > 0);
}

/* Run the complete lines in the input while the output has room; true
 * if lines are left for when it drained. */
static bool
admin_run(struct ctlsock_client *cl)
{
	struct sbuf	*out = ctlsock_out(cl);
	bool		 quit;

	while (ctlsock_pending(cl) < ADMIN_OUT_HIGH) {
		size_t	 inlen, len, used;
		char	*in = ctlsock_in(cl, &inlen);
		char	*lf = memchr(in, '\n', inlen);
		char	 line[ADMIN_LINE_MAX + 1];

		if (lf != NULL) {
			len = (size_t)(lf - in);
			used = len + 1;
		} else if (inlen == ADMIN_LINE_MAX) {
			sbuf_printf(out, "error: line too long (at most "
			    "%d bytes): closing\n\n", ADMIN_LINE_MAX - 1);
			A.commands++;
			A.bad_commands++;
			ctlsock_finish(cl);
			return false;
		} else if (cl->eof && inlen > 0) {
			len = used = inlen;	/* last line without LF */
		} else
			return false;
		if (len > 0 && in[len - 1] == '\r')
			len--;
		memcpy(line, in, len);
		ctlsock_consume(cl, used);
		A.cur = cl;
		quit = run_line(line, len, out);
		A.cur = NULL;
		if (quit) {
			ctlsock_finish(cl);
			return false;
		}
		if (sbuf_failed(out))
			return false;		/* the engine closes it */
	}
	return line_ready(cl);
}

static void
admin_open(struct ctlsock_client *cl)
{
	ctlsock_deadline(cl, A.idle_s, true);
}

static const struct ctlsock_ops admin_ops = {
	.name = "admin",
	.clients_max = ADMIN_CLIENTS_MAX,
	.in_max = ADMIN_LINE_MAX,
	.out_high = ADMIN_OUT_HIGH,
	.backlog = ADMIN_BACKLOG,
	.linger_s = ADMIN_LINGER_S,
	.linger_max = 0,
	.busy = "error: too many admin clients (at most 16): try again "
	    "later\n\n",
	.run = admin_run,
	.open = admin_open,
};

/* ------------------------------------------------------------------ */
/* Listeners. */

/* The unix path the config asks for: "" when [admin] is absent. */
static const char *
wanted_path(const struct conf_admin *ca, char *buf, size_t len)
{
	if (!ca->enabled)
		return "";
	if (ca->socket[0] != '\0')
		return ca->socket;
	if (admin_default_socket(buf, len) == NULL)
		return ADMIN_SOCKET_DEFAULT;
	return buf;
}

/*
 * Bring the listeners to ca. fatal: a failure of the TCP bind or of an
 * explicit socket path returns -1 (the old listener stays); a failure at
 * the default path is a warning. Returns 0 or -1.
 */
static int
listeners_apply(const struct conf_admin *ca)
{
	struct ctlsock_listener	*nl;
	char			 pbuf[CTLSOCK_PATH_MAX], why[256];
	char			 abuf[NET_ADDRSTRLEN];
	const char		*path = wanted_path(ca, pbuf, sizeof(pbuf));
	int			 rc = 0;

	if (path[0] == '\0') {
		ctlsock_listener_close(A.unx);
		A.unx = NULL;
	} else if (A.unx == NULL || strcmp(A.unx->path, path) != 0) {
		nl = ctlsock_listen_unix(&A.cs, path, why, sizeof(why));
		if (nl == NULL) {
			if (ca->socket[0] != '\0' || errno == EADDRINUSE) {
				log_errorx("admin: cannot open the socket %s: "
				    "%s", path, why);
				rc = -1;
			} else
				log_warnx("admin: no unix socket: cannot open "
				    "the default %s: %s (set [admin] socket)",
				    path, why);
		} else {
			ctlsock_listener_close(A.unx);
			A.unx = nl;
			log_info("admin: listening on %s (unix, mode 0600)",
			    path);
		}
	}

	if (!ca->enabled || ca->bind.len == 0) {
		ctlsock_listener_close(A.tcp);
		A.tcp = NULL;
	} else if (A.tcp == NULL || !net_addr_equal(
	    (struct sockaddr *)&A.tcp->addr.ss,
	    (const struct sockaddr *)&ca->bind.ss)) {
		net_addr_str((const struct sockaddr *)&ca->bind.ss, abuf,
		    sizeof(abuf));
		if (ctlsock_move_tcp(&A.cs, &A.tcp, &ca->bind) == -1) {
			log_errorx("admin: cannot listen on %s: %s", abuf,
			    strerror(errno));
			rc = -1;
		} else {
			log_info("admin: listening on %s (TCP)", abuf);
			if (!net_is_loopback(
			    (const struct sockaddr *)&ca->bind.ss))
				log_warnx("admin: %s has no authentication: "
				    "anyone who reaches it steers shoal", abuf);
		}
	}
	return rc;
}

int
admin_start(struct control *c)
{
	A.ctl = c;
	ctlsock_init(&A.cs, c->loop, &admin_ops);
	A.unx = A.tcp = NULL;
	A.running = true;
	A.idle_s = c->conf->admin.timeout_ms / 1000.0;
	if (listeners_apply(&c->conf->admin) == -1) {
		admin_stop();
		return -1;
	}
	return 0;
}

int
admin_reload(const struct conf *nc)
{
	if (!A.running)
		return 0;
	/* New clients get the new idle timeout; connected ones keep theirs. */
	A.idle_s = nc->admin.timeout_ms / 1000.0;
	return listeners_apply(&nc->admin);
}

void
admin_stop_listening(void)
{
	if (!A.running)
		return;
	ctlsock_stop_listening(&A.cs);
	A.unx = A.tcp = NULL;
}

void
admin_stop(void)
{
	if (!A.running)
		return;
	ctlsock_fini(&A.cs);
	A.unx = A.tcp = NULL;
	A.running = false;
}
