/*
 * admin.c - the admin socket: line commands on a unix socket and an
 * optional TCP listener, in the control loop.
 *
 *   client --line--> client_read() --> client_run() --> cmd_*()
 *          <--text--  client_flush() <-- answer ending with an empty line
 *
 * Each client has a bounded input buffer (one line, ADMIN_LINE_MAX) and an
 * output buffer; a command runs only while less than ADMIN_OUT_HIGH bytes
 * of earlier answers wait to be sent, so a client that does not read
 * stops being read instead of growing shoal's memory. Every socket is
 * non-blocking; nothing here waits. Commands change the server table
 * through its door, as the config and discovery do (server_join,
 * server_leave, server_set_admin, server_set_weight), so workers see a
 * change at their next pick and health follows through the table.
 */
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
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
#include "control.h"
#include "listen.h"
#include "log.h"
#include "sbuf.h"
#include "server.h"
#include "stats.h"
#include "worker.h"

#define ADMIN_ARGS_MAX		16	/* words per command line */
#define ADMIN_ACCEPT_BATCH	16	/* accepts per wake-up */
#define ADMIN_BACKLOG		16
#define ADMIN_PAUSE_S		1.0	/* accept paused after EMFILE */
#define ADMIN_ECHO_MAX		40	/* bytes of a bad word echoed back */
#define ADMIN_LINGER_S		2.0	/* discard input this long at close */
#define ADMIN_FDS_PER_MSG	200	/* SCM_RIGHTS per sendmsg (< SCM_MAX_FD) */

#define SUN_PATH_MAX	sizeof(((struct sockaddr_un *)0)->sun_path)

/* One listening socket: the unix socket or the TCP bind. */
struct admin_listener {
	int			 fd;		/* -1: closed */
	ev_io			 io;
	ev_timer		 pause;		/* accept paused (EMFILE) */
	bool			 is_unix;
	char			 path[SUN_PATH_MAX];
	dev_t			 dev;		/* unix: our file, removed... */
	ino_t			 ino;		/* ...only if it is still it */
	struct conf_addr	 addr;		/* TCP: bound address */
};

struct admin_client {
	int			 fd;		/* -1 once closed */
	ev_io			 io;
	int			 events;	/* current interest */
	ev_timer		 idle;
	char			 in[ADMIN_LINE_MAX]; /* unread input */
	size_t			 inlen;
	struct sbuf		 out;		/* answers not yet sent */
	size_t			 outoff;	/* bytes of out already sent */
	bool			 eof;		/* the peer shut its side */
	bool			 closing;	/* close once out is sent */
	bool			 lingering;	/* FIN sent, discarding input */
	bool			 is_unix;	/* may receive sockets */
	int			*pass;		/* fds to send with the output */
	size_t			 npass;
	char			 peer[NET_ADDRSTRLEN]; /* "unix" or "IP:PORT" */
	TAILQ_ENTRY(admin_client) entry;
};

TAILQ_HEAD(admin_client_list, admin_client);

static struct {
	struct control		*ctl;		/* borrowed, outlives us */
	struct ev_loop		*loop;
	bool			 running;
	struct admin_listener	 unx;
	struct admin_listener	 tcp;
	struct admin_client_list clients;
	size_t			 nclients;
	struct admin_client_list dead;		/* freed before the next poll */
	ev_prepare		 reap;
	uint64_t		 commands;	/* lines run */
	uint64_t		 bad_commands;	/* answered with an error */
	double			 idle_s;	/* [admin] timeout */
	struct ratelimit	 rl_accept;
	struct admin_client	*cur;		/* whose line runs now */
} A;

/* A command: its leading words, its argument count, its handler. */
struct cmd {
	const char	*words[3];
	int		 nwords;
	int		 minargs, maxargs;
	const char	*usage;		/* "set server B/S ..." */
	const char	*help;		/* one line */
	int		(*fn)(int argc, char **argv, struct sbuf *out);
};

static void	client_close(struct admin_client *, const char *why);

/* ------------------------------------------------------------------ */
/* Small helpers. */

/* Append s (n bytes) for an error message: printable ASCII as is, the
 * rest as \xNN, at most ADMIN_ECHO_MAX bytes of input. */
static void
put_echo(struct sbuf *out, const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n && i < ADMIN_ECHO_MAX; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (ch >= 0x20 && ch < 0x7f && ch != '\\')
			sbuf_put(out, &s[i], 1);
		else
			sbuf_printf(out, "\\x%02x", ch);
	}
	if (n > ADMIN_ECHO_MAX)
		sbuf_puts(out, "...");
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

static const struct cmd cmds[];
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
	size_t		 nservers = 0, nbackends = 0;
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
	sbuf_printf(out, "admin_clients: %zu\n", A.nclients);
	sbuf_printf(out, "admin_commands: %" PRIu64 "\n", A.commands);
	sbuf_printf(out, "bad_commands: %" PRIu64 "\n", A.bad_commands);
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
	sbuf_puts(out, "\n");
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
	    "%s\n", wname, "server", waddr, "address", "source", "state",
	    "weight", "cur", "total", "bytes_in", "bytes_out", "conn_fail",
	    "check", "label");
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

static int
cmd_set_server(int argc, char **argv, struct sbuf *out)
{
	struct backend	*be;
	struct server	*s;
	const char	*why;
	long		 w;
	uint32_t	 cur;

	if (strcmp(argv[1], "state") != 0 && strcmp(argv[1], "weight") != 0)
		return errorf(out, "usage: set server BACKEND/SERVER state "
		    "ready|drain|maint, or set server BACKEND/SERVER weight N");
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
 * socket passed (SCM_RIGHTS) along the answer. Unix clients only: the
 * file mode of the socket is what guards it.
 */
static int
cmd_get_listeners(int argc, char **argv, struct sbuf *out)
{
	struct admin_client	 *c = A.cur;
	struct control		 *ctl = A.ctl;
	const struct conf_addr	**binds = NULL;
	const char		**names = NULL;
	size_t			 *which = NULL, nb = 0, k = 0;
	int			 *fds = NULL, n;
	char			  abuf[NET_ADDRSTRLEN];

	if (c == NULL || !c->is_unix)
		return errorf(out, "get listeners: only over the unix socket");
	if (ctl->stopping)
		return errorf(out, "shoal is stopping: its listeners are "
		    "closed");
	if (c->npass > 0)
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
	if ((n = listen_export(binds, nb, fds, which, LISTEN_FDS_MAX)) == -1) {
		n = errorf(out, "get listeners: %s", strerror(errno));
		goto done;
	}
	for (int i = 0; i < n; i++)
		sbuf_printf(out, "listener %s %s\n", names[which[i]],
		    net_addr_str((const struct sockaddr *)&binds[which[i]]->ss,
		    abuf, sizeof(abuf)));
	sbuf_printf(out, "pid %ld\n", (long)getpid());
	log_info("admin: handing over %d listening socket%s", n, plural(
	    (uint32_t)n));
	c->pass = fds;
	c->npass = (size_t)n;
	fds = NULL;
	n = 0;
done:
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

static const struct cmd cmds[] = {
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
	{ { "set", "server" }, 2, 3, 3,
	  "set server B/S state ready|drain|maint", "admin state",
	  cmd_set_server },
	{ { "set", "server" }, 2, 3, 3, "set server B/S weight N",
	  "weight 0..256 (0: no new sessions)", cmd_set_server },
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
 * Run one command line (len bytes, no LF) and append its answer, ending
 * with the empty line, to out. Returns true if the connection should
 * close after the answer (quit).
 */
static bool
run_line(char *line, size_t len, struct sbuf *out)
{
	struct sbuf		 ans;
	char			*argv[ADMIN_ARGS_MAX + 1], *p, *save = NULL;
	int			 argc = 0, rc;
	const struct cmd	*best = NULL, *usage = NULL;
	bool			 quit = false, wrote = false;
	char			 last;

	A.commands++;
	sbuf_init(&ans);
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)line[i];

		if ((ch < 0x20 && ch != '\t') || ch == 0x7f) {
			sbuf_puts(&ans, "error: unknown command '");
			put_echo(&ans, line, len);
			sbuf_puts(&ans, "' (control characters; try help)\n");
			rc = -1;
			goto done;
		}
	}
	line[len] = '\0';
	for (p = strtok_r(line, " \t", &save); p != NULL;
	    p = strtok_r(NULL, " \t", &save)) {
		if (argc == ADMIN_ARGS_MAX) {
			rc = errorf(&ans, "too many words (at most %d)",
			    ADMIN_ARGS_MAX);
			goto done;
		}
		argv[argc++] = p;
	}
	argv[argc] = NULL;
	if (argc == 0) {
		rc = errorf(&ans, "empty command (try help)");
		goto done;
	}
	for (size_t i = 0; i < ncmds; i++) {
		const struct cmd *c = &cmds[i];
		int k;

		for (k = 0; k < c->nwords && k < argc; k++)
			if (strcmp(c->words[k], argv[k]) != 0)
				break;
		if (k < c->nwords)
			continue;
		if (argc - k < c->minargs || argc - k > c->maxargs) {
			if (usage == NULL)
				usage = c;
			continue;
		}
		best = c;
		break;
	}
	if (best == NULL && usage != NULL) {
		sbuf_puts(&ans, "error: usage:");
		for (size_t i = 0; i < ncmds; i++)
			if (cmds[i].fn == usage->fn)
				sbuf_printf(&ans, " %s%s", cmds[i].usage,
				    i + 1 < ncmds && cmds[i + 1].fn ==
				    usage->fn ? ", or" : "");
		sbuf_puts(&ans, "\n");
		rc = -1;
		goto done;
	}
	if (best == NULL) {
		sbuf_puts(&ans, "error: unknown command '");
		for (int i = 0; i < argc && i < 3; i++) {
			if (i > 0)
				sbuf_puts(&ans, " ");
			put_echo(&ans, argv[i], strlen(argv[i]));
		}
		sbuf_puts(&ans, "' (try help)\n");
		rc = -1;
		goto done;
	}
	rc = best->fn(argc - best->nwords, argv + best->nwords, &ans);
	quit = best->fn == cmd_quit;
done:
	if (sbuf_failed(&ans)) {
		sbuf_free(&ans);
		sbuf_puts(&ans, "error: out of memory\n");
		rc = -1;
	}
	if (rc == -1)
		A.bad_commands++;
	/* The answer ends at the first empty line: never put one inside. */
	last = '\n';
	for (size_t i = 0, j; i < ans.len; i = j) {
		const char *lf = memchr(ans.data + i, '\n', ans.len - i);

		j = lf != NULL ? (size_t)(lf - ans.data) + 1 : ans.len;
		if (j - i == 1 && ans.data[i] == '\n')
			continue;
		sbuf_put(out, ans.data + i, j - i);
		last = ans.data[j - 1];
		wrote = true;
	}
	if (!wrote)
		sbuf_puts(out, "ok");
	if (!wrote || last != '\n')
		sbuf_puts(out, "\n");
	sbuf_puts(out, "\n");
	sbuf_free(&ans);
	return quit;
}

/* ------------------------------------------------------------------ */
/* Clients. */

static void
reap_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
	struct admin_client *c;

	while ((c = TAILQ_FIRST(&A.dead)) != NULL) {
		TAILQ_REMOVE(&A.dead, c, entry);
		free(c);
	}
	ev_prepare_stop(loop, w);
}

/* The one exit of a client: the memory goes before the next poll. */
static void
client_close(struct admin_client *c, const char *why)
{
	if (c->fd == -1)
		return;
	log_debug("admin: client %s closed (%s)", c->peer, why);
	ev_io_stop(A.loop, &c->io);
	ev_timer_stop(A.loop, &c->idle);
	net_close(c->fd);
	c->fd = -1;
	sbuf_free(&c->out);
	while (c->npass > 0)
		net_close(c->pass[--c->npass]);
	free(c->pass);
	c->pass = NULL;
	TAILQ_REMOVE(&A.clients, c, entry);
	A.nclients--;
	TAILQ_INSERT_TAIL(&A.dead, c, entry);
	ev_prepare_start(A.loop, &A.reap);
}

static size_t
client_pending(const struct admin_client *c)
{
	return c->out.len - c->outoff;
}

/* Send one line of the output with up to ADMIN_FDS_PER_MSG of the fds
 * waiting to be passed; as send(2). */
static ssize_t
client_send_fds(struct admin_client *c)
{
	union {
		struct cmsghdr	h;
		char		b[CMSG_SPACE(sizeof(int) * ADMIN_FDS_PER_MSG)];
	}		 cbuf;
	size_t		 k = c->npass < ADMIN_FDS_PER_MSG ? c->npass :
			    ADMIN_FDS_PER_MSG;
	const char	*p = c->out.data + c->outoff;
	const char	*lf = memchr(p, '\n', client_pending(c));
	struct iovec	 iov = { (void *)p, lf ? (size_t)(lf - p) + 1 :
			    client_pending(c) };
	struct msghdr	 msg;
	struct cmsghdr	*cm;
	ssize_t		 n;

	memset(&msg, 0, sizeof(msg));
	memset(&cbuf, 0, sizeof(cbuf));
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = cbuf.b;
	msg.msg_controllen = CMSG_SPACE(sizeof(int) * k);
	cm = CMSG_FIRSTHDR(&msg);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int) * k);
	memcpy(CMSG_DATA(cm), c->pass + (c->npass - k), sizeof(int) * k);
	if ((n = sendmsg(c->fd, &msg, MSG_NOSIGNAL)) == -1)
		return -1;
	/* Passed: the receiver holds them now. */
	for (size_t i = 0; i < k; i++)
		net_close(c->pass[--c->npass]);
	return n;
}

/* Send what is pending; false if the client was closed. */
static bool
client_flush(struct admin_client *c)
{
	while (client_pending(c) > 0) {
		ssize_t n = c->npass > 0 ? client_send_fds(c) :
		    send(c->fd, c->out.data + c->outoff, client_pending(c),
		    MSG_NOSIGNAL);

		if (n == -1) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return true;
			client_close(c, strerror(errno));
			return false;
		}
		c->outoff += (size_t)n;
		ev_timer_again(A.loop, &c->idle);
	}
	sbuf_reset(&c->out);
	c->outoff = 0;
	return true;
}

/* Run the complete lines in the input while the output has room. */
static void
client_run(struct admin_client *c)
{
	while (!c->closing && client_pending(c) < ADMIN_OUT_HIGH) {
		char	*lf = memchr(c->in, '\n', c->inlen);
		size_t	 len, used;

		if (lf != NULL) {
			len = (size_t)(lf - c->in);
			used = len + 1;
		} else if (c->inlen == sizeof(c->in)) {
			sbuf_printf(&c->out, "error: line too long (at most "
			    "%d bytes): closing\n\n", ADMIN_LINE_MAX - 1);
			A.commands++;
			A.bad_commands++;
			c->closing = true;
			break;
		} else if (c->eof && c->inlen > 0) {
			len = used = c->inlen;	/* last line without LF */
		} else
			break;
		if (len > 0 && c->in[len - 1] == '\r')
			len--;
		{
			char line[ADMIN_LINE_MAX + 1];

			memcpy(line, c->in, len);
			memmove(c->in, c->in + used, c->inlen - used);
			c->inlen -= used;
			A.cur = c;
			if (run_line(line, len, &c->out))
				c->closing = true;
			A.cur = NULL;
		}
		if (sbuf_failed(&c->out)) {
			log_warnx("admin: client %s: out of memory", c->peer);
			client_close(c, "out of memory");
			return;
		}
		if (c->fd == -1)
			return;
	}
}

/* Derive the watcher's interest from the state; close when done. */
static void
client_update(struct admin_client *c)
{
	int ev = 0;

	if (c->fd == -1)
		return;
	if ((c->closing || c->eof) && client_pending(c) == 0) {
		if (c->eof) {
			client_close(c, c->closing ? "done" : "end of input");
			return;
		}
		/*
		 * Input may still come (after quit or an overlong line).
		 * Closing with unread input would reset the connection and
		 * could destroy the answer in flight: send a FIN and discard
		 * what comes for a while instead.
		 */
		if (!c->lingering) {
			c->lingering = true;
			c->inlen = 0;
			(void)shutdown(c->fd, SHUT_WR);
			c->idle.repeat = ADMIN_LINGER_S;
			ev_timer_again(A.loop, &c->idle);
		}
		ev = EV_READ;
	} else if (!c->eof && !c->closing &&
	    client_pending(c) < ADMIN_OUT_HIGH && c->inlen < sizeof(c->in))
		ev |= EV_READ;
	if (client_pending(c) > 0)
		ev |= EV_WRITE;
	if (ev != c->events) {
		ev_io_stop(A.loop, &c->io);
		ev_io_set(&c->io, c->fd, ev);
		if (ev != 0)
			ev_io_start(A.loop, &c->io);
		c->events = ev;
	}
}

/* Read what the socket has; false if the client was closed. */
static bool
client_read(struct admin_client *c)
{
	char	discard[4096];
	ssize_t	n;

	if (c->lingering) {
		for (int i = 0; i < 16; i++) {
			n = recv(c->fd, discard, sizeof(discard), 0);
			if (n == -1 && (errno == EAGAIN ||
			    errno == EWOULDBLOCK))
				return true;
			if (n <= 0 && !(n == -1 && errno == EINTR)) {
				client_close(c, "done");
				return false;
			}
		}
		return true;
	}
	if (c->eof || c->closing || c->inlen == sizeof(c->in))
		return true;
	n = recv(c->fd, c->in + c->inlen, sizeof(c->in) - c->inlen, 0);
	if (n == -1) {
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
			return true;
		client_close(c, strerror(errno));
		return false;
	}
	if (n == 0)
		c->eof = true;
	else {
		c->inlen += (size_t)n;
		ev_timer_again(A.loop, &c->idle);
	}
	return true;
}

/*
 * Run lines and send answers until the output blocks or no complete line
 * is left, then set the interest. Each round runs at least one line (the
 * output was empty), so the loop ends with the input buffer.
 */
static void
client_step(struct admin_client *c)
{
	for (;;) {
		client_run(c);
		if (c->fd == -1 || !client_flush(c))
			return;
		if (client_pending(c) > 0 || c->closing ||
		    (memchr(c->in, '\n', c->inlen) == NULL &&
		    !(c->eof && c->inlen > 0)))
			break;
	}
	client_update(c);
}

static void
client_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct admin_client *c = w->data;

	if ((revents & EV_READ) && !client_read(c))
		return;
	client_step(c);
}

static void
client_idle_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct admin_client *c = w->data;

	client_close(c, c->lingering ? "done" : "idle timeout");
}

static void
client_new(int fd, const char *peer, bool is_unix)
{
	struct admin_client *c;

	if ((c = calloc(1, sizeof(*c))) == NULL) {
		log_warn("admin: client %s", peer);
		net_close(fd);
		return;
	}
	c->fd = fd;
	c->is_unix = is_unix;
	sbuf_init(&c->out);
	snprintf(c->peer, sizeof(c->peer), "%s", peer);
	ev_io_init(&c->io, client_io_cb, fd, EV_READ);
	c->io.data = c;
	c->events = EV_READ;
	ev_io_start(A.loop, &c->io);
	ev_init(&c->idle, client_idle_cb);
	c->idle.repeat = A.idle_s;
	c->idle.data = c;
	ev_timer_again(A.loop, &c->idle);
	TAILQ_INSERT_TAIL(&A.clients, c, entry);
	A.nclients++;
	log_debug("admin: client %s connected", peer);
}

/* ------------------------------------------------------------------ */
/* Listeners. */

static void
pause_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct admin_listener *l = w->data;

	if (l->fd != -1)
		ev_io_start(loop, &l->io);
}

static void
accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	static const char busy[] = "error: too many admin clients (at most "
	    "16): try again later\n\n";
	struct admin_listener	*l = w->data;
	struct sockaddr_storage	 ss;
	socklen_t		 sl;
	char			 peer[NET_ADDRSTRLEN];
	int			 fd;

	for (int i = 0; i < ADMIN_ACCEPT_BATCH; i++) {
		sl = sizeof(ss);
		fd = accept4(l->fd, (struct sockaddr *)&ss, &sl,
		    SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd == -1) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			/* EMFILE and the like: pause, no busy loop. */
			if (log_ratelimit(&A.rl_accept, 1))
				log_warn("admin: accept");
			ev_io_stop(loop, &l->io);
			ev_timer_set(&l->pause, ADMIN_PAUSE_S, 0.);
			ev_timer_start(loop, &l->pause);
			return;
		}
		if (l->is_unix)
			snprintf(peer, sizeof(peer), "unix");
		else
			net_addr_str((struct sockaddr *)&ss, peer,
			    sizeof(peer));
		if (A.nclients >= ADMIN_CLIENTS_MAX) {
			if (log_ratelimit(&A.rl_accept, 1))
				log_warnx("admin: refusing client %s: %d "
				    "clients connected", peer,
				    ADMIN_CLIENTS_MAX);
			/* Best effort: a fresh socket has room for this. */
			if (send(fd, busy, sizeof(busy) - 1,
			    MSG_NOSIGNAL | MSG_DONTWAIT) == -1) {
				/* nothing more to tell it */
			}
			net_close(fd);
			continue;
		}
		client_new(fd, peer, l->is_unix);
	}
}

static void
listener_start(struct admin_listener *l)
{
	ev_io_init(&l->io, accept_cb, l->fd, EV_READ);
	l->io.data = l;
	ev_init(&l->pause, pause_cb);
	l->pause.data = l;
	ev_io_start(A.loop, &l->io);
}

static void
listener_close(struct admin_listener *l)
{
	struct stat st;

	if (l->fd == -1)
		return;
	ev_io_stop(A.loop, &l->io);
	ev_timer_stop(A.loop, &l->pause);
	net_close(l->fd);
	l->fd = -1;
	/* Remove the file only if it is still ours (not a newer shoal's). */
	if (l->is_unix && stat(l->path, &st) == 0 && st.st_dev == l->dev &&
	    st.st_ino == l->ino)
		(void)unlink(l->path);
}

/* Create the parent directory of path (mode 0750) if it is missing. */
static int
make_parent(const char *path)
{
	char	dir[SUN_PATH_MAX];
	char	*slash;

	snprintf(dir, sizeof(dir), "%s", path);
	if ((slash = strrchr(dir, '/')) == NULL || slash == dir)
		return 0;
	*slash = '\0';
	if (mkdir(dir, 0750) == 0) {
		(void)chmod(dir, 0750);		/* whatever the umask */
		log_info("admin: created %s (mode 0750)", dir);
		return 0;
	}
	return errno == EEXIST ? 0 : -1;
}

/*
 * Open the unix socket at path into l. A stale socket file (nothing
 * accepts on it) is replaced; a live one (a connect succeeds) or a file
 * that is not a socket is an error. The socket is made with mode 0600
 * (umask around bind: the worker threads create no files). 0, or -1 with
 * a reason in why.
 */
static int
unix_open(const char *path, struct admin_listener *l, char *why, size_t wlen)
{
	struct sockaddr_un	 sun;
	struct stat		 st;
	mode_t			 old;
	int			 fd, probe;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sun.sun_path)) {
		snprintf(why, wlen, "path too long (at most %zu bytes)",
		    sizeof(sun.sun_path) - 1);
		return -1;
	}
	memcpy(sun.sun_path, path, strlen(path) + 1);
	if (make_parent(path) == -1) {
		snprintf(why, wlen, "cannot create its directory: %s",
		    strerror(errno));
		return -1;
	}
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			snprintf(why, wlen, "the file exists and is not a "
			    "socket");
			return -1;
		}
		probe = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK |
		    SOCK_CLOEXEC, 0);
		if (probe == -1) {
			snprintf(why, wlen, "socket: %s", strerror(errno));
			return -1;
		}
		if (connect(probe, (struct sockaddr *)&sun, sizeof(sun)) == 0 ||
		    errno == EAGAIN) {
			net_close(probe);
			snprintf(why, wlen, "another process answers on it "
			    "(is another shoal running?)");
			errno = EADDRINUSE;
			return -1;
		}
		net_close(probe);
		log_info("admin: replacing the stale socket %s", path);
		if (unlink(path) == -1 && errno != ENOENT) {
			snprintf(why, wlen, "cannot remove the stale "
			    "socket: %s", strerror(errno));
			return -1;
		}
	}
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0)) == -1) {
		snprintf(why, wlen, "socket: %s", strerror(errno));
		return -1;
	}
	old = umask(0177);
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1) {
		umask(old);
		snprintf(why, wlen, "bind: %s", strerror(errno));
		net_close(fd);
		return -1;
	}
	umask(old);
	if (chmod(path, 0600) == -1 || listen(fd, ADMIN_BACKLOG) == -1 ||
	    stat(path, &st) == -1) {
		snprintf(why, wlen, "%s", strerror(errno));
		(void)unlink(path);
		net_close(fd);
		return -1;
	}
	memset(l, 0, sizeof(*l));
	l->fd = fd;
	l->is_unix = true;
	snprintf(l->path, sizeof(l->path), "%s", path);
	l->dev = st.st_dev;
	l->ino = st.st_ino;
	return 0;
}

static int
tcp_open(const struct conf_addr *a, struct admin_listener *l, char *why,
    size_t wlen)
{
	int fd;

	if ((fd = net_listen((const struct sockaddr *)&a->ss, a->len, false,
	    ADMIN_BACKLOG)) == -1) {
		snprintf(why, wlen, "%s", strerror(errno));
		return -1;
	}
	memset(l, 0, sizeof(*l));
	l->fd = fd;
	l->addr = *a;
	return 0;
}

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

static bool
is_loopback(const struct conf_addr *a)
{
	const struct sockaddr_in	*sin = (const void *)&a->ss;
	const struct sockaddr_in6	*sin6 = (const void *)&a->ss;

	if (a->ss.ss_family == AF_INET)
		return (ntohl(sin->sin_addr.s_addr) >> 24) == 127;
	return IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr);
}

/*
 * Bring the listeners to ca. fatal: a failure of the TCP bind or of an
 * explicit socket path returns -1 (the old listener stays); a failure at
 * the default path is a warning. Returns 0 or -1.
 */
static int
listeners_apply(const struct conf_admin *ca)
{
	struct admin_listener	 nl;
	char			 pbuf[sizeof(A.unx.path)], why[256];
	char			 abuf[NET_ADDRSTRLEN];
	const char		*path = wanted_path(ca, pbuf, sizeof(pbuf));
	int			 rc = 0;

	if (path[0] == '\0')
		listener_close(&A.unx);
	else if (A.unx.fd == -1 || strcmp(A.unx.path, path) != 0) {
		if (unix_open(path, &nl, why, sizeof(why)) == -1) {
			if (ca->socket[0] != '\0' || errno == EADDRINUSE) {
				log_errorx("admin: cannot open the socket %s: "
				    "%s", path, why);
				rc = -1;
			} else
				log_warnx("admin: no unix socket: cannot open "
				    "the default %s: %s (set [admin] socket)",
				    path, why);
		} else {
			listener_close(&A.unx);
			A.unx = nl;
			listener_start(&A.unx);
			log_info("admin: listening on %s (unix, mode 0600)",
			    path);
		}
	}

	if (!ca->enabled || ca->bind.len == 0)
		listener_close(&A.tcp);
	else if (A.tcp.fd == -1 || !net_addr_equal(
	    (struct sockaddr *)&A.tcp.addr.ss,
	    (const struct sockaddr *)&ca->bind.ss)) {
		net_addr_str((const struct sockaddr *)&ca->bind.ss, abuf,
		    sizeof(abuf));
		if (tcp_open(&ca->bind, &nl, why, sizeof(why)) == -1) {
			log_errorx("admin: cannot listen on %s: %s", abuf, why);
			rc = -1;
		} else {
			listener_close(&A.tcp);
			A.tcp = nl;
			listener_start(&A.tcp);
			log_info("admin: listening on %s (TCP)", abuf);
			if (!is_loopback(&ca->bind))
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
	A.loop = c->loop;
	A.unx.fd = A.tcp.fd = -1;
	TAILQ_INIT(&A.clients);
	TAILQ_INIT(&A.dead);
	ev_prepare_init(&A.reap, reap_cb);
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
	listener_close(&A.unx);
	listener_close(&A.tcp);
}

void
admin_stop(void)
{
	struct admin_client *c;

	if (!A.running)
		return;
	listener_close(&A.unx);
	listener_close(&A.tcp);
	while ((c = TAILQ_FIRST(&A.clients)) != NULL)
		client_close(c, "shutdown");
	reap_cb(A.loop, &A.reap, 0);
	A.running = false;
}
