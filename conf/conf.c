/*
 * conf.c - load and validate shoal's configuration.
 *
 * The text is read into memory and handed to inih line by line through our
 * own reader, which counts lines (inih's handler gets none), rejects overlong
 * lines and handles "[section]" headers itself: inih truncates long section
 * names and calls nothing for a section without keys. inih then splits
 * "key = value" lines and calls handler(), which looks the key up in the
 * current section kind's table and stores the value through its offset.
 *
 * Everything about a section lives in the tables below: adding a section
 * ([discovery], [stats], ...) is a struct in conf.h, a key table, and one
 * entry in kinds[].
 */
#include <sys/types.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <net/if.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ini.h>

#include "cidr.h"
#include "clienthello.h"
#include "conf.h"
#include "name.h"

#define nitems(a)	(sizeof(a) / sizeof((a)[0]))
#define fsize(t, f)	sizeof(((struct t *)0)->f)

#define FILE_MAX	(16 * 1024 * 1024)	/* biggest config file read */
#define KEYS_MAX	64			/* keys in one section kind */
#define DURATION_MAX	(24L * 3600 * 1000)	/* 24h, in ms */
#define VALFMT		"%.128s"		/* values quoted in messages */

#define NAME_RULE	"1-63 characters from A-Z a-z 0-9 . _ -"
#define DURATION_RULE	"expected a number with a unit ms, s, m or h"
#define SERVER_RULE	\
	"expected 'NAME ADDR:PORT [weight=N] [maxconn=N] [backup] " \
	"[init_state=up|checking|down] [send_proxy=none|v1|v2]'"
#define SYNTAX_RULE	"syntax error: expected 'key = value' or '[section]'"

enum ktype {
	T_INT,		/* int, decimal, min..max */
	T_DURATION,	/* uint32_t ms, with a unit, min..max ms */
	T_DURATION_US,	/* uint32_t us, with a unit, min..max us */
	T_BOOL,		/* bool */
	T_ENUM,		/* enum (int sized), one of words[] */
	T_NAME,		/* char[size], a name */
	T_REF,		/* char[size], names a [ref NAME]; off2: pointer */
	T_STRING,	/* char[size], printable */
	T_ESCAPED,	/* char[size], C escapes decoded; off2: size_t length */
	T_ADDR,		/* struct conf_addr */
	T_ADDRLIST,	/* struct conf_addr *; off2: size_t count */
	T_THREADS,	/* int: "auto" (0) or min..max */
	T_SERVER,	/* struct conf_server *; off2: size_t count */
	T_HTTPCHECK,	/* "METHOD PATH": method at off, char[size] path
			   at off2 */
	T_GROUP,	/* struct conf_addr: a multicast address, no port */
	T_CIDRLIST,	/* struct conf_cidr *; off2: size_t count */
	T_AUTH,		/* bool: "none" true, "hmac-sha256" false */
	T_RATE,		/* uint32_t per second: "N/s" or "N", min..max */
	T_RESOLVE,	/* "NAME:PORT": char[size] name at off, int port
			   at off2 */
	T_RESOLVERS,	/* "ADDR[:PORT] ...": char[size] csv for c-ares */
	T_ROUTE,	/* "PATTERN BACKEND": struct conf_route *; off2:
			   size_t count */
	T_PATHLIST,	/* a file: struct conf_path *; off2: size_t count */
	T_SCALE,	/* a scale condition: struct scaleexpr at off, bool
			   "given" at off2 */
};

#define K_REPEAT	0x01	/* a list: may be given more than once */
#define K_REQUIRED	0x02	/* must be given in every such section */
#define K_TOKEN		0x04	/* T_STRING: no blanks either */
#define K_WILDCARD	0x08	/* T_ADDR*: 0.0.0.0 and [::] allowed */

struct key {
	const char		*name;
	enum ktype		 type;
	int			 flags;
	size_t			 off;	/* the field in the section's struct */
	size_t			 size;	/* its size, for strings */
	size_t			 off2;	/* second field, see enum ktype */
	long			 min;	/* bounds (int, threads, ms) */
	long			 max;
	const char *const	*words;	/* T_ENUM values, in enum order */
	const char		*ref;	/* T_REF: the kind referred to */
};

struct parser;

struct kind {
	const char		*name;		/* "[name]" or "[name NAME]" */
	bool			 named;		/* per NAME, or at most one */
	size_t			 size;		/* one section's struct */
	size_t			 off;		/* unnamed: struct in conf,
						   named: array pointer */
	size_t			 count_off;	/* named: size_t count */
	size_t			 name_off;	/* named: char[CONF_NAME_MAX] */
	size_t			 line_off;	/* named: int line */
	size_t			 min_count;	/* sections required */
	const struct key	*keys;
	size_t			 nkeys;
	void			(*init)(void *);	/* defaults */
	int			(*finish)(struct parser *, void *);
};

/* A T_REF value, resolved once the whole file is read. */
struct ref {
	const struct kind	*kind;
	size_t			 idx;
	const struct key	*key;
	int			 line;
};

static void	global_init(void *);
static void	frontend_init(void *);
static int	frontend_finish(struct parser *, void *);
static void	backend_init(void *);
static int	backend_finish(struct parser *, void *);
static void	discovery_init(void *);
static int	discovery_finish(struct parser *, void *);
static void	stats_init(void *);
static int	stats_finish(struct parser *, void *);
static void	admin_init(void *);
static int	admin_finish(struct parser *, void *);

static const char *const balance_words[] = {
	[BALANCE_ROUNDROBIN] = "roundrobin",
	[BALANCE_LEASTCONN] = "leastconn",
	[BALANCE_SOURCE] = "source",
	[BALANCE_RANDOM] = "random",
	[BALANCE_FIRST] = "first",
	NULL
};

static const char *const init_state_words[] = {
	[INIT_UP] = "up",
	[INIT_CHECKING] = "checking",
	[INIT_DOWN] = "down",
	NULL
};

static const char *const send_proxy_words[] = {
	[SEND_PROXY_NONE] = "none",
	[SEND_PROXY_V1] = "v1",
	[SEND_PROXY_V2] = "v2",
	NULL
};

static const char *const check_words[] = {
	[CHECK_NONE] = "none",
	[CHECK_TCP] = "tcp",
	[CHECK_HTTP] = "http",
	[CHECK_TLS] = "tls",
	[CHECK_SEND_EXPECT] = "send-expect",
	NULL
};

static const char *const log_level_words[] = {
	[LOG_LVL_ERROR] = "error",
	[LOG_LVL_WARN] = "warn",
	[LOG_LVL_INFO] = "info",
	[LOG_LVL_DEBUG] = "debug",
	NULL
};

static const char *const tls_min_words[] = {
	[TLS_MIN_12] = "1.2",
	[TLS_MIN_13] = "1.3",
	NULL
};

static const char *const http_methods[] = { "GET", "HEAD", "OPTIONS", NULL };

_Static_assert(sizeof(enum conf_balance) == sizeof(int), "enum size");
_Static_assert(sizeof(enum conf_check) == sizeof(int), "enum size");
_Static_assert(sizeof(enum log_level) == sizeof(int), "enum size");
_Static_assert(sizeof(enum conf_init_state) == sizeof(int), "enum size");
_Static_assert(sizeof(enum conf_send_proxy) == sizeof(int), "enum size");
_Static_assert(sizeof(enum conf_tls_min) == sizeof(int), "enum size");
_Static_assert(fsize(conf_backend, check_http_method) > sizeof("OPTIONS"),
    "method size");

#define KINT(s, n, f, lo, hi) { .name = n, .type = T_INT, \
	.off = offsetof(struct s, f), .min = lo, .max = hi }
#define KDUR(s, n, f, lo) { .name = n, .type = T_DURATION, \
	.off = offsetof(struct s, f), .min = lo, .max = DURATION_MAX }
#define KBOOL(s, n, f) { .name = n, .type = T_BOOL, \
	.off = offsetof(struct s, f) }
#define KENUM(s, n, f, w) { .name = n, .type = T_ENUM, \
	.off = offsetof(struct s, f), .words = w }
#define KSTR(s, n, f, fl) { .name = n, .type = T_STRING, .flags = fl, \
	.off = offsetof(struct s, f), .size = fsize(s, f) }
#define KESC(s, n, f, l) { .name = n, .type = T_ESCAPED, \
	.off = offsetof(struct s, f), .size = fsize(s, f), \
	.off2 = offsetof(struct s, l) }

static const struct key global_keys[] = {
	{ .name = "threads", .type = T_THREADS,
	  .off = offsetof(struct conf_global, threads), .min = 1, .max = 256 },
	KINT(conf_global, "maxconn", maxconn, 1, 1000000),
	KDUR(conf_global, "grace", grace_ms, 0),
	KENUM(conf_global, "log_level", log_level, log_level_words),
	{ .name = "io_collect", .type = T_DURATION_US,
	  .off = offsetof(struct conf_global, io_collect_us), .min = 0,
	  .max = 100000 },
	KBOOL(conf_global, "splice", splice),
	KDUR(conf_global, "tls_ticket_rotate", tls_ticket_rotate_ms, 0),
	KBOOL(conf_global, "ktls", ktls),
};

static const struct key frontend_keys[] = {
	{ .name = "bind", .type = T_ADDRLIST,
	  .flags = K_REPEAT | K_REQUIRED | K_WILDCARD,
	  .off = offsetof(struct conf_frontend, binds),
	  .off2 = offsetof(struct conf_frontend, nbinds) },
	{ .name = "backend", .type = T_REF, .flags = K_REQUIRED,
	  .off = offsetof(struct conf_frontend, backend_name),
	  .size = fsize(conf_frontend, backend_name),
	  .off2 = offsetof(struct conf_frontend, backend), .ref = "backend" },
	KDUR(conf_frontend, "timeout_client", timeout_client_ms, 1),
	KINT(conf_frontend, "maxconn", maxconn, 0, 1000000),
	{ .name = "allow", .type = T_CIDRLIST, .flags = K_REPEAT,
	  .off = offsetof(struct conf_frontend, allow),
	  .off2 = offsetof(struct conf_frontend, nallow) },
	{ .name = "deny", .type = T_CIDRLIST, .flags = K_REPEAT,
	  .off = offsetof(struct conf_frontend, deny),
	  .off2 = offsetof(struct conf_frontend, ndeny) },
	KBOOL(conf_frontend, "accept_proxy", accept_proxy),
	{ .name = "accept_proxy_from", .type = T_CIDRLIST, .flags = K_REPEAT,
	  .off = offsetof(struct conf_frontend, proxy_from),
	  .off2 = offsetof(struct conf_frontend, nproxy_from) },
	KDUR(conf_frontend, "timeout_proxy", timeout_proxy_ms, 1),
	KINT(conf_frontend, "maxconn_per_source", maxconn_per_source, 0,
	    1000000),
	{ .name = "rate_per_source", .type = T_RATE,
	  .off = offsetof(struct conf_frontend, rate_per_source), .min = 0,
	  .max = 1000000 },
	{ .name = "route", .type = T_ROUTE, .flags = K_REPEAT,
	  .off = offsetof(struct conf_frontend, routes),
	  .off2 = offsetof(struct conf_frontend, nroutes) },
	KDUR(conf_frontend, "timeout_preread", timeout_preread_ms, 1),
	KBOOL(conf_frontend, "tls", tls),
	{ .name = "cert", .type = T_PATHLIST, .flags = K_REPEAT,
	  .off = offsetof(struct conf_frontend, certs),
	  .off2 = offsetof(struct conf_frontend, ncerts) },
	KENUM(conf_frontend, "tls_min", tls_min, tls_min_words),
	KSTR(conf_frontend, "alpn", alpn, K_TOKEN),
	KDUR(conf_frontend, "timeout_handshake", timeout_handshake_ms, 1),
	KBOOL(conf_frontend, "tls_tickets", tls_tickets),
};

static const struct key backend_keys[] = {
	KENUM(conf_backend, "balance", balance, balance_words),
	{ .name = "server", .type = T_SERVER, .flags = K_REPEAT,
	  .off = offsetof(struct conf_backend, servers),
	  .off2 = offsetof(struct conf_backend, nservers) },
	KDUR(conf_backend, "timeout_connect", timeout_connect_ms, 1),
	KDUR(conf_backend, "timeout_server", timeout_server_ms, 1),
	KDUR(conf_backend, "timeout_queue", timeout_queue_ms, 0),
	KINT(conf_backend, "retries", retries, 0, 16),
	KDUR(conf_backend, "slowstart", slowstart_ms, 0),
	{ .name = "scale_up", .type = T_SCALE,
	  .off = offsetof(struct conf_backend, scale_up),
	  .off2 = offsetof(struct conf_backend, has_scale_up) },
	{ .name = "scale_down", .type = T_SCALE,
	  .off = offsetof(struct conf_backend, scale_down),
	  .off2 = offsetof(struct conf_backend, has_scale_down) },
	KDUR(conf_backend, "scale_cooldown", scale_cooldown_ms, 0),
	KSTR(conf_backend, "scale_hook", scale_hook, K_TOKEN),
	KDUR(conf_backend, "scale_hook_timeout", scale_hook_timeout_ms, 100),
	KENUM(conf_backend, "send_proxy", send_proxy, send_proxy_words),
	KENUM(conf_backend, "check", check, check_words),
	{ .name = "check_http", .type = T_HTTPCHECK,
	  .off = offsetof(struct conf_backend, check_http_method),
	  .size = fsize(conf_backend, check_http_path),
	  .off2 = offsetof(struct conf_backend, check_http_path) },
	KSTR(conf_backend, "check_host", check_http_host, K_TOKEN),
	KESC(conf_backend, "check_send", check_send, check_send_len),
	KESC(conf_backend, "check_expect", check_expect, check_expect_len),
	KSTR(conf_backend, "check_sni", check_sni, K_TOKEN),
	KSTR(conf_backend, "check_ca_file", check_ca_file, 0),
	KINT(conf_backend, "check_port", check_port, 1, 65535),
	KDUR(conf_backend, "check_interval", check_interval_ms, 10),
	KDUR(conf_backend, "check_timeout", check_timeout_ms, 10),
	KINT(conf_backend, "rise", rise, 1, 100),
	KINT(conf_backend, "fall", fall, 1, 100),
	KENUM(conf_backend, "init_state", init_state, init_state_words),
	KBOOL(conf_backend, "check_send_proxy", check_send_proxy),
	{ .name = "resolve", .type = T_RESOLVE,
	  .off = offsetof(struct conf_backend, resolve_name),
	  .size = fsize(conf_backend, resolve_name),
	  .off2 = offsetof(struct conf_backend, resolve_port) },
	KSTR(conf_backend, "resolve_srv", resolve_srv, K_TOKEN),
	{ .name = "resolvers", .type = T_RESOLVERS,
	  .off = offsetof(struct conf_backend, resolvers),
	  .size = fsize(conf_backend, resolvers) },
	KDUR(conf_backend, "resolve_min", resolve_min_ms, 100),
	KDUR(conf_backend, "resolve_max", resolve_max_ms, 100),
	KDUR(conf_backend, "resolve_hold", resolve_hold_ms, 0),
	KBOOL(conf_backend, "tls", tls),
	KSTR(conf_backend, "tls_verify", tls_verify, 0),
	KSTR(conf_backend, "tls_sni", tls_sni, K_TOKEN),
	KSTR(conf_backend, "tls_cert", tls_cert, 0),
	KSTR(conf_backend, "tls_alpn", tls_alpn, K_TOKEN),
	KBOOL(conf_backend, "discovery", discovery),
	KINT(conf_backend, "max_discovered", max_discovered, 0, 100000),
};

static const struct key discovery_keys[] = {
	{ .name = "group", .type = T_GROUP,
	  .off = offsetof(struct conf_discovery, group) },
	KINT(conf_discovery, "port", port, 1, 65535),
	KSTR(conf_discovery, "interface", interface, K_TOKEN),
	KSTR(conf_discovery, "realm", realm, 0),
	KSTR(conf_discovery, "key_file", key_file, 0),
	{ .name = "auth", .type = T_AUTH,
	  .off = offsetof(struct conf_discovery, auth_none) },
	{ .name = "allow", .type = T_CIDRLIST, .flags = K_REPEAT,
	  .off = offsetof(struct conf_discovery, allow),
	  .off2 = offsetof(struct conf_discovery, nallow) },
	KDUR(conf_discovery, "max_skew", max_skew_ms, 100),
	KBOOL(conf_discovery, "require_source_match", require_source_match),
};

_Static_assert(nitems(global_keys) <= KEYS_MAX, "too many keys");
_Static_assert(nitems(discovery_keys) <= KEYS_MAX, "too many keys");

static const struct key stats_keys[] = {
	{ .name = "bind", .type = T_ADDR, .flags = K_REQUIRED | K_WILDCARD,
	  .off = offsetof(struct conf_stats, bind) },
	KDUR(conf_stats, "refresh", refresh_ms, 1000),
};

static const struct key admin_keys[] = {
	KSTR(conf_admin, "socket", socket, K_TOKEN),
	{ .name = "bind", .type = T_ADDR, .flags = K_WILDCARD,
	  .off = offsetof(struct conf_admin, bind) },
	KDUR(conf_admin, "timeout", timeout_ms, 100),
};

_Static_assert(nitems(stats_keys) <= KEYS_MAX, "too many keys");
_Static_assert(nitems(admin_keys) <= KEYS_MAX, "too many keys");
_Static_assert(nitems(frontend_keys) <= KEYS_MAX, "too many keys");
_Static_assert(nitems(backend_keys) <= KEYS_MAX, "too many keys");

static const struct kind kinds[] = {
	{ .name = "global", .named = false,
	  .size = sizeof(struct conf_global),
	  .off = offsetof(struct conf, global),
	  .keys = global_keys, .nkeys = nitems(global_keys),
	  .init = global_init },
	{ .name = "frontend", .named = true,
	  .size = sizeof(struct conf_frontend),
	  .off = offsetof(struct conf, frontends),
	  .count_off = offsetof(struct conf, nfrontends),
	  .name_off = offsetof(struct conf_frontend, name),
	  .line_off = offsetof(struct conf_frontend, line),
	  .min_count = 1,
	  .keys = frontend_keys, .nkeys = nitems(frontend_keys),
	  .init = frontend_init, .finish = frontend_finish },
	{ .name = "backend", .named = true,
	  .size = sizeof(struct conf_backend),
	  .off = offsetof(struct conf, backends),
	  .count_off = offsetof(struct conf, nbackends),
	  .name_off = offsetof(struct conf_backend, name),
	  .line_off = offsetof(struct conf_backend, line),
	  .keys = backend_keys, .nkeys = nitems(backend_keys),
	  .init = backend_init, .finish = backend_finish },
	{ .name = "discovery", .named = false,
	  .size = sizeof(struct conf_discovery),
	  .off = offsetof(struct conf, discovery),
	  .keys = discovery_keys, .nkeys = nitems(discovery_keys),
	  .init = discovery_init, .finish = discovery_finish },
	{ .name = "stats", .named = false,
	  .size = sizeof(struct conf_stats),
	  .off = offsetof(struct conf, stats),
	  .keys = stats_keys, .nkeys = nitems(stats_keys),
	  .init = stats_init, .finish = stats_finish },
	{ .name = "admin", .named = false,
	  .size = sizeof(struct conf_admin),
	  .off = offsetof(struct conf, admin),
	  .keys = admin_keys, .nkeys = nitems(admin_keys),
	  .init = admin_init, .finish = admin_finish },
};

/* An open-addressing set of server names: duplicate checks stay linear in
 * the number of servers (100 000 servers load in well under a second). */
struct name_slot {
	uint32_t		 hash;
	uint32_t		 section;	/* backend index + 1; 0 = empty */
	uint32_t		 pos;		/* index in that backend's list */
};

struct name_set {
	struct name_slot	*slots;		/* [cap], cap a power of two */
	size_t			 cap;
	size_t			 n;
};

struct parser {
	const char		*file;		/* name for messages */
	const char		*text;		/* the whole file */
	size_t			 len;
	size_t			 pos;		/* next line starts here */
	int			 line;		/* current line, from 1 */
	const char		*cur;		/* current line, raw, no '\n' */
	size_t			 curlen;
	char			*err;		/* CONF_ERR_MAX */
	bool			 failed;
	struct conf		*conf;
	const struct kind	*kind;		/* current section, or NULL */
	size_t			 idx;		/* its index when named */
	int			 kind_line;	/* its header line */
	int			 seen[KEYS_MAX];	/* key: line set */
	int			 once[nitems(kinds)];	/* header line */
	struct ref		*refs;
	size_t			 nrefs;
	struct name_set		 servers;	/* server names seen, per backend */
};

static int	set_value(struct parser *, const struct key *, char *,
		    const char *);

/*
 * Record the first error as "FILE:LINE: message" ("FILE: message" for
 * line 0); later ones are dropped.
 */
__attribute__((format(printf, 3, 4)))
static void
perr(struct parser *p, int line, const char *fmt, ...)
{
	va_list	 ap;
	int	 n;

	if (p->failed)
		return;
	p->failed = true;
	if (line > 0)
		n = snprintf(p->err, CONF_ERR_MAX, "%s:%d: ", p->file, line);
	else
		n = snprintf(p->err, CONF_ERR_MAX, "%s: ", p->file);
	if (n < 0 || n >= CONF_ERR_MAX)
		return;
	va_start(ap, fmt);
	vsnprintf(p->err + n, CONF_ERR_MAX - n, fmt, ap);
	va_end(ap);
}

/* Pointer fields are read and written with memcpy: no aliasing games. */
static void *
get_ptr(const char *o, size_t off)
{
	void	*v;

	memcpy(&v, o + off, sizeof(v));
	return v;
}

static void
put_ptr(char *o, size_t off, void *v)
{
	memcpy(o + off, &v, sizeof(v));
}

static size_t
kind_count(const struct conf *c, const struct kind *k)
{
	if (!k->named)
		return 1;
	return *(const size_t *)(const void *)((const char *)c + k->count_off);
}

/* Section i of kind k (unnamed kinds have exactly one, i = 0). */
static char *
kind_obj(const struct conf *c, const struct kind *k, size_t i)
{
	if (!k->named)
		return (char *)c + k->off;
	return (char *)get_ptr((const char *)c, k->off) + i * k->size;
}

static const struct kind *
kind_find(const char *name, size_t len)
{
	size_t	 i;

	for (i = 0; i < nitems(kinds); i++)
		if (strlen(kinds[i].name) == len &&
		    memcmp(kinds[i].name, name, len) == 0)
			return &kinds[i];
	return NULL;
}

static int
key_index(const struct kind *k, const char *name)
{
	size_t	 i;

	for (i = 0; i < k->nkeys; i++)
		if (strcmp(k->keys[i].name, name) == 0)
			return (int)i;
	return -1;
}

/* Line where key name was first set in the current section, 0 if not. */
static int
seen_line(const struct parser *p, const char *name)
{
	int	 i;

	if ((i = key_index(p->kind, name)) == -1)
		return 0;
	return p->seen[i];
}

/* "[backend app]" or "[global]" for the current section, into buf. */
static const char *
section_label(const struct parser *p, char *buf, size_t sz)
{
	const char	*o;

	if (!p->kind->named) {
		snprintf(buf, sz, "[%s]", p->kind->name);
		return buf;
	}
	o = kind_obj(p->conf, p->kind, p->idx);
	snprintf(buf, sz, "[%s %s]", p->kind->name, o + p->kind->name_off);
	return buf;
}

static bool
valid_name(const char *s, size_t len)
{
	return len != 0 && len < CONF_NAME_MAX && name_chars_valid(s, len);
}

/* "a, b, c or d" from a NULL terminated list. */
static const char *
join_words(const char *const *w, char *buf, size_t sz)
{
	size_t	 i, n, len = 0;
	int	 r;

	buf[0] = '\0';
	for (n = 0; w[n] != NULL; n++)
		;
	for (i = 0; i < n && len < sz; i++) {
		r = snprintf(buf + len, sz - len, "%s%s",
		    i == 0 ? "" : i == n - 1 ? " or " : ", ", w[i]);
		if (r < 0)
			break;
		len += (size_t)r;
	}
	return buf;
}

static int
word_index(const char *const *w, const char *s)
{
	int	 i;

	for (i = 0; w[i] != NULL; i++)
		if (strcmp(w[i], s) == 0)
			return i;
	return -1;
}

/* A duration in the largest unit that shows it exactly. */
static const char *
fmt_ms(long ms, char *buf, size_t sz)
{
	if (ms == 0)
		snprintf(buf, sz, "0s");
	else if (ms % 3600000 == 0)
		snprintf(buf, sz, "%ldh", ms / 3600000);
	else if (ms % 60000 == 0)
		snprintf(buf, sz, "%ldm", ms / 60000);
	else if (ms % 1000 == 0)
		snprintf(buf, sz, "%lds", ms / 1000);
	else
		snprintf(buf, sz, "%ldms", ms);
	return buf;
}

/*
 * Decimal integer, whole string, optional '-' (only meaningful when min is
 * negative). Returns 0, -1 when not a number, -2 when out of min..max.
 */
static int
parse_long(const char *s, long min, long max, long *v)
{
	unsigned long	 acc = 0, lim;
	bool		 neg = false, over = false;
	int		 d;
	long		 n;

	if (*s == '-') {
		neg = true;
		s++;
	}
	if (!isdigit((unsigned char)*s))
		return -1;
	lim = neg ? (unsigned long)LONG_MAX + 1 : (unsigned long)LONG_MAX;
	for (; isdigit((unsigned char)*s); s++) {
		d = *s - '0';
		if (acc > (lim - d) / 10)
			over = true;
		else
			acc = acc * 10 + d;
	}
	if (*s != '\0')
		return -1;
	if (over || (neg && min >= 0))
		return -2;
	if (neg)
		n = acc == (unsigned long)LONG_MAX + 1 ? LONG_MIN : -(long)acc;
	else
		n = (long)acc;
	if (n < min || n > max)
		return -2;
	*v = n;
	return 0;
}

struct unit {
	const char	*name;
	long		 mult;
};

/*
 * A decimal number followed by one of `units` (mandatory), converted to
 * the base unit in *v. Returns 0, -1 on syntax, -2 above max.
 */
static int
parse_unit(const char *s, const struct unit *units, size_t nunits, long max,
    long *v)
{
	long	 n = 0;
	bool	 over = false;

	if (!isdigit((unsigned char)*s))
		return -1;
	for (; isdigit((unsigned char)*s); s++) {
		if (n > max)
			over = true;
		else
			n = n * 10 + (*s - '0');
	}
	for (size_t i = 0; i < nunits; i++) {
		if (strcmp(s, units[i].name) != 0)
			continue;
		if (over || n > max / units[i].mult)
			return -2;
		*v = n * units[i].mult;
		return 0;
	}
	return -1;
}

/* Duration with a unit; 0, -1 on syntax, -2 above 24h. */
static int
parse_ms(const char *s, long *ms)
{
	static const struct unit units[] = {
		{ "ms", 1 }, { "s", 1000 }, { "m", 60000 }, { "h", 3600000 },
	};

	return parse_unit(s, units, nitems(units), DURATION_MAX, ms);
}

/*
 * Parse a duration with a mandatory unit: "500ms", "2s", "1m", "1h", at most
 * 24h. Stores milliseconds in *ms. Returns 0, or -1 with a static reason in
 * *why.
 */
int
conf_parse_duration(const char *s, uint32_t *ms, const char **why)
{
	long	 v;

	switch (parse_ms(s, &v)) {
	case 0:
		*ms = (uint32_t)v;
		return 0;
	case -1:
		*why = DURATION_RULE;
		return -1;
	default:
		*why = "must be at most 24h";
		return -1;
	}
}

/*
 * Parse a decimal integer within min..max (a sign only if min < 0, no
 * blanks). Stores it in *v. Returns 0, or -1 with a static reason in *why.
 */
int
conf_parse_int(const char *s, long min, long max, long *v, const char **why)
{
	switch (parse_long(s, min, max, v)) {
	case 0:
		return 0;
	case -1:
		*why = "expected a decimal number";
		return -1;
	default:
		*why = "out of range";
		return -1;
	}
}

/*
 * Parse yes/no/true/false/on/off/1/0 into *v. Returns 0, or -1 with a static
 * reason in *why.
 */
int
conf_parse_bool(const char *s, bool *v, const char **why)
{
	static const char *const yes[] = { "yes", "true", "on", "1", NULL };
	static const char *const no[] = { "no", "false", "off", "0", NULL };

	if (word_index(yes, s) != -1) {
		*v = true;
		return 0;
	}
	if (word_index(no, s) != -1) {
		*v = false;
		return 0;
	}
	*why = "expected yes, no, true, false, on, off, 1 or 0";
	return -1;
}

/*
 * Parse a numeric "IPv4:PORT" or "[IPv6]:PORT" (no DNS) into *a: ss, len
 * and port are set, a->line is left alone. Returns 0, or -1 with a static
 * reason in *why.
 */
int
conf_parse_addr(const char *s, struct conf_addr *a, const char **why)
{
	struct sockaddr_in	*sin;
	struct sockaddr_in6	*sin6;
	char			 host[INET6_ADDRSTRLEN + 1];
	const char		*h, *port, *end, *q;
	size_t			 hlen;
	long			 pn;
	bool			 v6;

	if (*s == '\0') {
		*why = "empty address";
		return -1;
	}
	if (*s == '[') {
		v6 = true;
		h = s + 1;
		if ((end = strchr(h, ']')) == NULL) {
			*why = "missing ']' after IPv6 address";
			return -1;
		}
		if (end[1] != ':') {
			*why = "expected ':PORT' after ']'";
			return -1;
		}
		port = end + 2;
	} else {
		v6 = false;
		h = s;
		if ((end = strchr(s, ':')) == NULL) {
			*why = "missing ':PORT'";
			return -1;
		}
		if (strchr(end + 1, ':') != NULL) {
			*why = "IPv6 addresses need brackets, e.g. [::1]:80";
			return -1;
		}
		port = end + 1;
	}
	hlen = (size_t)(end - h);
	if (hlen == 0) {
		*why = "missing host (use 0.0.0.0 or [::] for any)";
		return -1;
	}
	if (hlen >= sizeof(host)) {
		*why = v6 ? "bad IPv6 address" : "numeric address required";
		return -1;
	}
	memcpy(host, h, hlen);
	host[hlen] = '\0';
	if (*port == '\0') {
		*why = "missing port";
		return -1;
	}
	switch (parse_long(port, 1, 65535, &pn)) {
	case -1:
		*why = "bad port: expected a decimal number";
		return -1;
	case -2:
		*why = "port out of range 1-65535";
		return -1;
	}

	memset(a, 0, offsetof(struct conf_addr, line));
	if (v6) {
		sin6 = (struct sockaddr_in6 *)&a->ss;
		if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1) {
			*why = "bad IPv6 address";
			return -1;
		}
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)pn);
		a->len = sizeof(*sin6);
	} else {
		sin = (struct sockaddr_in *)&a->ss;
		if (inet_pton(AF_INET, host, &sin->sin_addr) != 1) {
			for (q = host; *q != '\0'; q++)
				if (!isdigit((unsigned char)*q) && *q != '.')
					break;
			*why = *q != '\0' ?
			    "numeric address required (no host names)" :
			    "bad IPv4 address";
			return -1;
		}
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)pn);
		a->len = sizeof(*sin);
	}
	return 0;
}

static bool
addr_unspecified(const struct conf_addr *a)
{
	const struct sockaddr_in	*sin = (const void *)&a->ss;
	const struct sockaddr_in6	*sin6 = (const void *)&a->ss;

	if (a->ss.ss_family == AF_INET)
		return sin->sin_addr.s_addr == htonl(INADDR_ANY);
	return IN6_IS_ADDR_UNSPECIFIED(&sin6->sin6_addr);
}

static bool
addr_multicast(const struct conf_addr *a)
{
	const struct sockaddr_in	*sin = (const void *)&a->ss;
	const struct sockaddr_in6	*sin6 = (const void *)&a->ss;

	if (a->ss.ss_family == AF_INET)
		return IN_MULTICAST(ntohl(sin->sin_addr.s_addr));
	return IN6_IS_ADDR_MULTICAST(&sin6->sin6_addr);
}

static bool
addr_equal(const struct conf_addr *a, const struct conf_addr *b)
{
	const struct sockaddr_in	*a4 = (const void *)&a->ss;
	const struct sockaddr_in	*b4 = (const void *)&b->ss;
	const struct sockaddr_in6	*a6 = (const void *)&a->ss;
	const struct sockaddr_in6	*b6 = (const void *)&b->ss;

	if (a->ss.ss_family != b->ss.ss_family)
		return false;
	if (a->ss.ss_family == AF_INET)
		return a4->sin_port == b4->sin_port &&
		    a4->sin_addr.s_addr == b4->sin_addr.s_addr;
	return a6->sin6_port == b6->sin6_port &&
	    IN6_ARE_ADDR_EQUAL(&a6->sin6_addr, &b6->sin6_addr);
}

/*
 * Whether a parsed address may be a server's: not unspecified (0.0.0.0,
 * ::) and not multicast. Returns 0, or -1 with a static reason in *why.
 */
int
conf_check_server_addr(const struct conf_addr *a, const char **why)
{
	if (addr_unspecified(a)) {
		*why = "unspecified address not allowed";
		return -1;
	}
	if (addr_multicast(a)) {
		*why = "multicast address not allowed";
		return -1;
	}
	return 0;
}

/* Append one element of size sz to the array at off/off2 of o; NULL if OOM. */
static void *
list_add(char *o, size_t off, size_t off2, size_t sz)
{
	size_t	*n = (size_t *)(void *)(o + off2);
	char	*v = get_ptr(o, off);

	/* Room for powers of two: linear in the list's final length. */
	if (*n == 0 || (*n & (*n - 1)) == 0) {
		if ((v = reallocarray(v, *n == 0 ? 1 : *n * 2, sz)) == NULL)
			return NULL;
		put_ptr(o, off, v);
	}
	memset(v + *n * sz, 0, sz);
	return v + (*n)++ * sz;
}

static int
set_int(struct parser *p, const struct key *k, char *o, const char *v)
{
	long	 n;

	switch (parse_long(v, k->min, k->max, &n)) {
	case -1:
		perr(p, p->line, "bad integer '" VALFMT "' for %s: "
		    "expected a decimal number", v, k->name);
		return -1;
	case -2:
		perr(p, p->line, "%s " VALFMT " out of range %ld-%ld",
		    k->name, v, k->min, k->max);
		return -1;
	}
	*(int *)(void *)(o + k->off) = (int)n;
	return 0;
}

static int
set_threads(struct parser *p, const struct key *k, char *o, const char *v)
{
	long	 n;

	if (strcmp(v, "auto") == 0)
		n = 0;
	else {
		switch (parse_long(v, k->min, k->max, &n)) {
		case -1:
			perr(p, p->line, "bad %s '" VALFMT "': expected auto "
			    "or a number %ld-%ld", k->name, v, k->min, k->max);
			return -1;
		case -2:
			perr(p, p->line, "%s " VALFMT " out of range %ld-%ld "
			    "(or auto)", k->name, v, k->min, k->max);
			return -1;
		}
	}
	*(int *)(void *)(o + k->off) = (int)n;
	return 0;
}

static int
set_duration(struct parser *p, const struct key *k, char *o, const char *v)
{
	char	 lo[32], hi[32];
	long	 ms;
	int	 rc;

	rc = parse_ms(v, &ms);
	if (rc == -1) {
		perr(p, p->line, "bad duration '" VALFMT "': " DURATION_RULE,
		    v);
		return -1;
	}
	if (rc == -2 || ms < k->min || ms > k->max) {
		perr(p, p->line, "%s " VALFMT " out of range %s-%s", k->name, v,
		    fmt_ms(k->min, lo, sizeof(lo)),
		    fmt_ms(k->max, hi, sizeof(hi)));
		return -1;
	}
	*(uint32_t *)(void *)(o + k->off) = (uint32_t)ms;
	return 0;
}

/* A short duration with a unit us, ms or s, stored in microseconds. */
static int
set_duration_us(struct parser *p, const struct key *k, char *o,
    const char *v)
{
	static const struct unit units[] = {
		{ "us", 1 }, { "ms", 1000 }, { "s", 1000000 },
	};
	long	 us;
	int	 rc;

	rc = parse_unit(v, units, nitems(units), k->max, &us);
	if (rc == -1) {
		perr(p, p->line, "bad duration '" VALFMT "': expected a number "
		    "with a unit us, ms or s", v);
		return -1;
	}
	if (rc == -2 || us < k->min || us > k->max) {
		perr(p, p->line, "%s " VALFMT " out of range %ldus-%ldus",
		    k->name, v, k->min, k->max);
		return -1;
	}
	*(uint32_t *)(void *)(o + k->off) = (uint32_t)us;
	return 0;
}

static int
set_bool(struct parser *p, const struct key *k, char *o, const char *v)
{
	const char	*why;

	if (conf_parse_bool(v, (bool *)(o + k->off), &why) == -1) {
		perr(p, p->line, "bad boolean '" VALFMT "' for %s: %s", v,
		    k->name, why);
		return -1;
	}
	return 0;
}

static int
set_enum(struct parser *p, const struct key *k, char *o, const char *v)
{
	char	 buf[256];
	int	 i;

	if ((i = word_index(k->words, v)) == -1) {
		perr(p, p->line, "bad %s '" VALFMT "': expected %s", k->name, v,
		    join_words(k->words, buf, sizeof(buf)));
		return -1;
	}
	*(int *)(void *)(o + k->off) = i;
	return 0;
}

static int
set_name(struct parser *p, const struct key *k, char *o, const char *v)
{
	struct ref	*r;
	size_t		 len = strlen(v);

	if (!valid_name(v, len) || len >= k->size) {
		perr(p, p->line, "bad %s '" VALFMT "': expected a name of "
		    NAME_RULE, k->name, v);
		return -1;
	}
	memcpy(o + k->off, v, len + 1);
	if (k->type != T_REF)
		return 0;
	r = reallocarray(p->refs, p->nrefs + 1, sizeof(*p->refs));
	if (r == NULL) {
		perr(p, p->line, "out of memory");
		return -1;
	}
	p->refs = r;
	r[p->nrefs].kind = p->kind;
	r[p->nrefs].idx = p->idx;
	r[p->nrefs].key = k;
	r[p->nrefs].line = p->line;
	p->nrefs++;
	return 0;
}

static int
set_string(struct parser *p, const struct key *k, char *o, const char *v)
{
	size_t	 len = strlen(v), i;

	if (len >= k->size) {
		perr(p, p->line, "%s too long (max %zu characters)", k->name,
		    k->size - 1);
		return -1;
	}
	for (i = 0; i < len; i++) {
		if (iscntrl((unsigned char)v[i])) {
			perr(p, p->line, "bad %s: contains control characters",
			    k->name);
			return -1;
		}
		if ((k->flags & K_TOKEN) && v[i] == ' ') {
			perr(p, p->line, "bad %s '" VALFMT "': must not "
			    "contain spaces", k->name, v);
			return -1;
		}
	}
	memcpy(o + k->off, v, len + 1);
	return 0;
}

static int
hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static int
set_escaped(struct parser *p, const struct key *k, char *o, const char *v)
{
	char	*buf = o + k->off;
	size_t	 n = 0;
	int	 c, hi, lo;

	for (; *v != '\0'; v++) {
		c = (unsigned char)*v;
		if (c == '\\') {
			switch (*++v) {
			case 'r':
				c = '\r';
				break;
			case 'n':
				c = '\n';
				break;
			case 't':
				c = '\t';
				break;
			case '\\':
				c = '\\';
				break;
			case 'x':
				if ((hi = hexval(v[1])) == -1 ||
				    (lo = hexval(v[2])) == -1) {
					perr(p, p->line, "bad %s: \\x needs "
					    "two hex digits", k->name);
					return -1;
				}
				c = hi << 4 | lo;
				v += 2;
				break;
			case '\0':
				perr(p, p->line, "bad %s: '\\' at the end",
				    k->name);
				return -1;
			default:
				perr(p, p->line, "bad %s: unknown escape "
				    "'\\%c' (use \\r \\n \\t \\\\ or \\xHH)",
				    k->name, *v);
				return -1;
			}
		}
		if (n + 1 >= k->size) {
			perr(p, p->line, "%s too long (max %zu bytes after "
			    "decoding)", k->name, k->size - 1);
			return -1;
		}
		buf[n++] = (char)c;
	}
	buf[n] = '\0';
	*(size_t *)(void *)(o + k->off2) = n;
	return 0;
}

static int
set_addr(struct parser *p, const struct key *k, char *o, const char *v)
{
	struct conf_addr	 a, *list;
	const struct kind	*kd = p->kind;
	const char		*why, *so;
	size_t			 i, j, n;

	if (conf_parse_addr(v, &a, &why) == -1 ||
	    (!(k->flags & K_WILDCARD) &&
	    conf_check_server_addr(&a, &why) == -1)) {
		perr(p, p->line, "bad address '" VALFMT "': %s", v, why);
		return -1;
	}
	if (addr_multicast(&a)) {
		perr(p, p->line, "bad address '" VALFMT "': multicast address "
		    "not allowed", v);
		return -1;
	}
	if (a.ss.ss_family == AF_INET6 && IN6_IS_ADDR_V4MAPPED(
	    &((const struct sockaddr_in6 *)(const void *)&a.ss)->sin6_addr)) {
		const struct sockaddr_in6 *s6 = (const void *)&a.ss;
		char v4[INET_ADDRSTRLEN];

		inet_ntop(AF_INET, &s6->sin6_addr.s6_addr[12], v4, sizeof(v4));
		/* IPv6 listeners are IPv6-only: such a bind would fail (or,
		 * dual-stack, take IPv4 traffic behind the config's back). */
		perr(p, p->line, "bad address '" VALFMT "': IPv4-mapped IPv6 "
		    "address: write %s:%d", v, v4, ntohs(s6->sin6_port));
		return -1;
	}
	a.line = p->line;
	if (k->type == T_ADDR) {
		*(struct conf_addr *)(void *)(o + k->off) = a;
		return 0;
	}

	/* A list (bind): the same address twice in any such section. */
	for (i = 0; i < kind_count(p->conf, kd); i++) {
		so = kind_obj(p->conf, kd, i);
		list = get_ptr(so, k->off);
		n = *(const size_t *)(const void *)(so + k->off2);
		for (j = 0; j < n; j++) {
			if (!addr_equal(&list[j], &a))
				continue;
			perr(p, p->line, "duplicate %s address '" VALFMT "' "
			    "(first at line %d)", k->name, v, list[j].line);
			return -1;
		}
	}
	if ((list = list_add(o, k->off, k->off2, sizeof(a))) == NULL) {
		perr(p, p->line, "out of memory");
		return -1;
	}
	*list = a;
	return 0;
}

/* weight=N or maxconn=N of a server line. */
static int
server_opt(struct parser *p, const char *opt, const char *val, long min,
    long max, int *field)
{
	long	 n;

	switch (parse_long(val, min, max, &n)) {
	case -1:
		perr(p, p->line, "bad %s '" VALFMT "': expected a decimal "
		    "number", opt, val);
		return -1;
	case -2:
		perr(p, p->line, "%s " VALFMT " out of range %ld-%ld", opt, val,
		    min, max);
		return -1;
	}
	*field = (int)n;
	return 0;
}

static uint32_t
name_hash(size_t section, const char *s)
{
	uint32_t h = 2166136261u ^ (uint32_t)section;	/* FNV-1a */

	for (; *s != '\0'; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h;
}

/* Index in list of the server called name in section, or SIZE_MAX. */
static size_t
name_set_find(const struct name_set *ns, size_t section, const char *name,
    const struct conf_server *list)
{
	uint32_t h = name_hash(section, name);

	if (ns->cap == 0)
		return SIZE_MAX;
	for (size_t i = h & (ns->cap - 1); ns->slots[i].section != 0;
	    i = (i + 1) & (ns->cap - 1)) {
		const struct name_slot *sl = &ns->slots[i];

		if (sl->hash == h && sl->section == section + 1 &&
		    strcmp(list[sl->pos].name, name) == 0)
			return sl->pos;
	}
	return SIZE_MAX;
}

static void
name_set_put(struct name_set *ns, struct name_slot sl)
{
	size_t i = sl.hash & (ns->cap - 1);

	while (ns->slots[i].section != 0)
		i = (i + 1) & (ns->cap - 1);
	ns->slots[i] = sl;
}

/* Record that section's server name sits at pos. 0 or -1 (ENOMEM). */
static int
name_set_add(struct name_set *ns, size_t section, const char *name,
    size_t pos)
{
	struct name_slot sl = { name_hash(section, name),
	    (uint32_t)section + 1, (uint32_t)pos };

	if ((ns->n + 1) * 2 > ns->cap) {
		struct name_set	 bigger = { NULL, ns->cap ? ns->cap * 2 : 64,
				    ns->n };

		if ((bigger.slots = calloc(bigger.cap, sizeof(*bigger.slots)))
		    == NULL)
			return -1;
		for (size_t i = 0; i < ns->cap; i++)
			if (ns->slots[i].section != 0)
				name_set_put(&bigger, ns->slots[i]);
		free(ns->slots);
		*ns = bigger;
	}
	name_set_put(ns, sl);
	ns->n++;
	return 0;
}

static int
set_server(struct parser *p, const struct key *k, char *o, const char *v)
{
	static const char	 blanks[] = " \t";
	struct conf_server	 s, *list;
	const char		*why;
	char			*copy, *save, *name, *addr, *tok, *eq;
	size_t			 i, n;
	bool			 w = false, m = false, b = false;
	int			 rc = -1;

	if ((copy = strdup(v)) == NULL) {
		perr(p, p->line, "out of memory");
		return -1;
	}
	memset(&s, 0, sizeof(s));
	s.weight = 1;
	s.init_state = INIT_UNSET;
	s.send_proxy = SEND_PROXY_UNSET;
	s.line = p->line;
	name = strtok_r(copy, blanks, &save);
	addr = name != NULL ? strtok_r(NULL, blanks, &save) : NULL;
	if (addr == NULL) {
		perr(p, p->line, "bad server '" VALFMT "': " SERVER_RULE, v);
		goto out;
	}
	if (!valid_name(name, strlen(name))) {
		perr(p, p->line, "bad server name '" VALFMT "': expected "
		    NAME_RULE, name);
		goto out;
	}
	if (conf_parse_addr(addr, &s.addr, &why) == -1 ||
	    conf_check_server_addr(&s.addr, &why) == -1) {
		perr(p, p->line, "bad server address '" VALFMT "': %s", addr,
		    why);
		goto out;
	}
	s.addr.line = p->line;
	memcpy(s.name, name, strlen(name) + 1);	/* valid_name: fits */

	while ((tok = strtok_r(NULL, blanks, &save)) != NULL) {
		eq = strchr(tok, '=');
		if (eq != NULL)
			*eq++ = '\0';
		if (strcmp(tok, "weight") == 0 || strcmp(tok, "maxconn") == 0) {
			bool	*dup = tok[0] == 'w' ? &w : &m;

			if (*dup) {
				perr(p, p->line, "server option '%s' given "
				    "twice", tok);
				goto out;
			}
			*dup = true;
			if (eq == NULL) {
				perr(p, p->line, "server option '%s' needs a "
				    "value: %s=N", tok, tok);
				goto out;
			}
			if (tok[0] == 'w' ? server_opt(p, tok, eq, 0, 256,
			    &s.weight) == -1 : server_opt(p, tok, eq, 0,
			    1000000, &s.maxconn) == -1)
				goto out;
		} else if (strcmp(tok, "backup") == 0) {
			if (b) {
				perr(p, p->line, "server option 'backup' given "
				    "twice");
				goto out;
			}
			b = s.backup = true;
			if (eq != NULL) {
				perr(p, p->line, "server option 'backup' takes "
				    "no value");
				goto out;
			}
		} else if (strcmp(tok, "init_state") == 0) {
			int st;

			if (s.init_state != INIT_UNSET) {
				perr(p, p->line, "server option 'init_state' "
				    "given twice");
				goto out;
			}
			if (eq == NULL || (st = word_index(init_state_words,
			    eq)) == -1) {
				perr(p, p->line, "bad server option "
				    "'init_state%s" VALFMT "': expected "
				    "init_state=up, checking or down",
				    eq != NULL ? "=" : "", eq != NULL ? eq : "");
				goto out;
			}
			s.init_state = (enum conf_init_state)st;
		} else if (strcmp(tok, "send_proxy") == 0) {
			int sp;

			if (s.send_proxy != SEND_PROXY_UNSET) {
				perr(p, p->line, "server option 'send_proxy' "
				    "given twice");
				goto out;
			}
			if (eq == NULL || (sp = word_index(send_proxy_words,
			    eq)) == -1) {
				perr(p, p->line, "bad server option "
				    "'send_proxy%s" VALFMT "': expected "
				    "send_proxy=none, v1 or v2",
				    eq != NULL ? "=" : "", eq != NULL ? eq : "");
				goto out;
			}
			s.send_proxy = (enum conf_send_proxy)sp;
		} else {
			perr(p, p->line, "unknown server option '" VALFMT "' "
			    "(expected weight=N, maxconn=N, backup, "
			    "init_state=STATE or send_proxy=none|v1|v2)", tok);
			goto out;
		}
	}

	list = get_ptr(o, k->off);
	n = *(const size_t *)(const void *)(o + k->off2);
	if ((i = name_set_find(&p->servers, p->idx, s.name, list)) != SIZE_MAX) {
		perr(p, p->line, "duplicate server name '%s' (first at "
		    "line %d)", s.name, list[i].line);
		goto out;
	}
	if (name_set_add(&p->servers, p->idx, s.name, n) == -1 ||
	    (list = list_add(o, k->off, k->off2, sizeof(s))) == NULL) {
		perr(p, p->line, "out of memory");
		goto out;
	}
	*list = s;
	rc = 0;
out:
	free(copy);
	return rc;
}

static int
set_httpcheck(struct parser *p, const struct key *k, char *o, const char *v)
{
	const char	*m, *path, *end;
	size_t		 mlen, plen, i;
	int		 mi;

	m = v;
	mlen = strcspn(m, " \t");
	path = m + mlen + strspn(m + mlen, " \t");
	plen = strcspn(path, " \t");
	end = path + plen + strspn(path + plen, " \t");
	if (mlen == 0 || plen == 0 || *end != '\0') {
		perr(p, p->line, "bad %s '" VALFMT "': expected 'METHOD PATH', "
		    "e.g. 'HEAD /'", k->name, v);
		return -1;
	}
	for (mi = 0; http_methods[mi] != NULL; mi++)
		if (strlen(http_methods[mi]) == mlen &&
		    memcmp(http_methods[mi], m, mlen) == 0)
			break;
	if (http_methods[mi] == NULL) {
		perr(p, p->line, "bad %s method '%.*s': expected GET, HEAD or "
		    "OPTIONS", k->name, (int)(mlen > 32 ? 32 : mlen), m);
		return -1;
	}
	if (*path != '/') {
		perr(p, p->line, "bad %s path '%.*s': must start with '/'",
		    k->name, (int)(plen > 128 ? 128 : plen), path);
		return -1;
	}
	for (i = 0; i < plen; i++) {
		if ((unsigned char)path[i] <= ' ' ||
		    (unsigned char)path[i] >= 0x7f) {
			perr(p, p->line, "bad %s path: must be printable ASCII "
			    "without spaces", k->name);
			return -1;
		}
	}
	if (plen >= k->size) {
		perr(p, p->line, "%s path too long (max %zu characters)",
		    k->name, k->size - 1);
		return -1;
	}
	/* method buffers hold any of http_methods (static assert above) */
	memcpy(o + k->off, http_methods[mi], strlen(http_methods[mi]) + 1);
	memcpy(o + k->off2, path, plen);
	o[k->off2 + plen] = '\0';
	return 0;
}

/* A multicast group address, without port (brackets optional for IPv6). */
static int
set_group(struct parser *p, const struct key *k, char *o, const char *v)
{
	struct conf_addr	 a;
	struct sockaddr_in	*sin = (struct sockaddr_in *)&a.ss;
	struct sockaddr_in6	*sin6 = (struct sockaddr_in6 *)&a.ss;
	char			 host[INET6_ADDRSTRLEN + 2];
	size_t			 len = strlen(v);

	memset(&a, 0, sizeof(a));
	if (len >= 2 && v[0] == '[' && v[len - 1] == ']' &&
	    len - 2 < sizeof(host)) {
		memcpy(host, v + 1, len - 2);
		host[len - 2] = '\0';
	} else if (len < sizeof(host))
		memcpy(host, v, len + 1);
	else
		host[0] = '\0';
	if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		a.len = sizeof(*sin);
	} else if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		a.len = sizeof(*sin6);
	} else {
		perr(p, p->line, "bad %s '" VALFMT "': expected a numeric "
		    "multicast address without port, e.g. 239.255.76.66 or "
		    "ff12::4c42:4431", k->name, v);
		return -1;
	}
	if (!addr_multicast(&a)) {
		perr(p, p->line, "bad %s '" VALFMT "': not a multicast address "
		    "(224.0.0.0/4 or ff00::/8)", k->name, v);
		return -1;
	}
	a.line = p->line;
	*(struct conf_addr *)(void *)(o + k->off) = a;
	return 0;
}

/* One network into a conf_cidr list: "ADDR/N" or a bare "ADDR" (one
 * host); IPv6 with or without brackets. cidr.c is the one parser. */
static int
add_cidr(struct parser *p, const struct key *k, char *o, const char *v)
{
	struct conf_cidr	 c, *list;
	struct cidr		 net;
	char			 why[96];

	if (cidr_parse(v, &net, why, sizeof(why)) == -1) {
		perr(p, p->line, "bad %s '" VALFMT "': %s", k->name, v, why);
		return -1;
	}
	memset(&c, 0, sizeof(c));
	if (net.family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&c.ss;

		sin->sin_family = AF_INET;
		memcpy(&sin->sin_addr, net.addr, 4);
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&c.ss;

		sin6->sin6_family = AF_INET6;
		memcpy(&sin6->sin6_addr, net.addr, 16);
	}
	c.prefix = net.prefix;
	c.line = p->line;
	if ((list = list_add(o, k->off, k->off2, sizeof(c))) == NULL) {
		perr(p, p->line, "out of memory");
		return -1;
	}
	*list = c;
	return 0;
}

/* A list of networks: blanks or commas between them; the key may repeat. */
static int
set_cidr(struct parser *p, const struct key *k, char *o, const char *v)
{
	char		 tok[CIDR_STRLEN + 16];
	const char	*sep = " \t,";
	size_t		 n, count = 0;

	for (v += strspn(v, sep); *v != '\0'; v += strspn(v, sep)) {
		n = strcspn(v, sep);
		if (n >= sizeof(tok)) {
			perr(p, p->line, "bad %s '%.*s': too long for a network",
			    k->name, (int)(n < 128 ? n : 128), v);
			return -1;
		}
		memcpy(tok, v, n);
		tok[n] = '\0';
		if (add_cidr(p, k, o, tok) == -1)
			return -1;
		v += n;
		count++;
	}
	if (count == 0) {
		perr(p, p->line, "%s needs at least one network, e.g. "
		    "192.168.42.0/24 or fd00::/64", k->name);
		return -1;
	}
	return 0;
}

/* A DNS name: 1-253 characters, labels of 1-63 from A-Z a-z 0-9 - _. */
static bool
dns_name_ok(const char *s, size_t n)
{
	size_t label = 0;

	if (n == 0 || n > 253)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '.') {
			if (label == 0)
				return false;
			label = 0;
			continue;
		}
		if (!isalnum((unsigned char)s[i]) && s[i] != '-' && s[i] != '_')
			return false;
		if (++label > 63)
			return false;
	}
	return true;
}

/* resolve = NAME:PORT */
static int
set_resolve(struct parser *p, const struct key *k, char *o, const char *v)
{
	const char	*colon = strrchr(v, ':');
	long		 port;

	if (colon == NULL || !dns_name_ok(v, (size_t)(colon - v)) ||
	    (size_t)(colon - v) >= k->size) {
		perr(p, p->line, "bad %s '" VALFMT "': expected NAME:PORT, "
		    "e.g. tasks.web:3000", k->name, v);
		return -1;
	}
	if (parse_long(colon + 1, 1, 65535, &port) != 0) {
		perr(p, p->line, "bad %s '" VALFMT "': port must be 1-65535",
		    k->name, v);
		return -1;
	}
	memcpy(o + k->off, v, (size_t)(colon - v));
	(o + k->off)[colon - v] = '\0';
	*(int *)(void *)(o + k->off2) = (int)port;
	return 0;
}

/* resolvers = ADDR[:PORT] ...: name servers (port 53 by default), kept
 * as the "ADDR:PORT,..." list c-ares reads. */
static int
set_resolvers(struct parser *p, const struct key *k, char *o, const char *v)
{
	char			*out = o + k->off, tok[INET6_ADDRSTRLEN + 10];
	char			 one[INET6_ADDRSTRLEN + 10];
	const char		*sep = " \t,", *why;
	struct conf_addr	 a;
	size_t			 n, used = 0;

	out[0] = '\0';
	for (v += strspn(v, sep); *v != '\0'; v += strspn(v, sep)) {
		n = strcspn(v, sep);
		if (n >= sizeof(tok))
			goto bad;
		memcpy(tok, v, n);
		tok[n] = '\0';
		v += n;
		if (conf_parse_addr(tok, &a, &why) == -1) {
			/* A bare address: port 53. */
			snprintf(one, sizeof(one), strchr(tok, ':') != NULL &&
			    tok[0] != '[' ? "[%s]:53" : "%s:53", tok);
			if (conf_parse_addr(one, &a, &why) == -1)
				goto bad;
			snprintf(tok, sizeof(tok), "%s", one);
		}
		if (used + strlen(tok) + 2 > k->size) {
			perr(p, p->line, "%s: too many name servers", k->name);
			return -1;
		}
		used += (size_t)snprintf(out + used, k->size - used, "%s%s",
		    used ? "," : "", tok);
	}
	if (used == 0)
		goto bad;
	return 0;
bad:
	perr(p, p->line, "bad %s '" VALFMT "': expected name server "
	    "addresses, e.g. 127.0.0.11 or [fd00::53]:5353", k->name, v);
	return -1;
}

/* route = PATTERN BACKEND (the backend is checked once the file is read) */
static int
set_route(struct parser *p, const struct key *k, char *o, const char *v)
{
	struct conf_route	 r, *list;
	struct clienthello_route cr;
	const char		*why, *sp;
	size_t			 n, m;

	memset(&r, 0, sizeof(r));
	n = strcspn(v, " \t");
	sp = v + n + strspn(v + n, " \t");
	m = strcspn(sp, " \t");
	if (n == 0 || m == 0 || sp[m + strspn(sp + m, " \t")] != '\0') {
		perr(p, p->line, "bad %s '" VALFMT "': expected PATTERN BACKEND, "
		    "e.g. *.example.com web", k->name, v);
		return -1;
	}
	if (n >= sizeof(r.pattern) || m >= sizeof(r.backend_name)) {
		perr(p, p->line, "bad %s '" VALFMT "': too long", k->name, v);
		return -1;
	}
	memcpy(r.pattern, v, n);
	memcpy(r.backend_name, sp, m);
	if (clienthello_route_parse(r.pattern, &cr, &why) == -1) {
		perr(p, p->line, "bad %s pattern '" VALFMT "': %s", k->name,
		    r.pattern, why);
		return -1;
	}
	r.line = p->line;
	if ((list = list_add(o, k->off, k->off2, sizeof(r))) == NULL) {
		perr(p, p->line, "out of memory");
		return -1;
	}
	*list = r;
	return 0;
}

/* cert = FILE: one more file of a list (read when the config is
 * applied: a bad file fails the start or the reload, at this line). */
static int
set_path(struct parser *p, const struct key *k, char *o, const char *v)
{
	struct conf_path	 f, *list;
	size_t			 n = strlen(v);

	memset(&f, 0, sizeof(f));
	if (n == 0 || n >= sizeof(f.path)) {
		perr(p, p->line, "bad %s: a file name of 1 to %zu characters",
		    k->name, sizeof(f.path) - 1);
		return -1;
	}
	for (size_t i = 0; i < n; i++)
		if (iscntrl((unsigned char)v[i])) {
			perr(p, p->line, "bad %s: contains control characters",
			    k->name);
			return -1;
		}
	memcpy(f.path, v, n);
	f.line = p->line;
	if ((list = list_add(o, k->off, k->off2, sizeof(f))) == NULL) {
		perr(p, p->line, "out of memory");
		return -1;
	}
	*list = f;
	return 0;
}

/* A rate per second: "N/s" or a bare "N". */
static int
set_rate(struct parser *p, const struct key *k, char *o, const char *v)
{
	char	 num[24];
	size_t	 n = strcspn(v, "/");
	long	 r;

	if (n >= sizeof(num) || (v[n] != '\0' && strcmp(v + n, "/s") != 0))
		goto bad;
	memcpy(num, v, n);
	num[n] = '\0';
	switch (parse_long(num, k->min, k->max, &r)) {
	case -1:
		goto bad;
	case -2:
		perr(p, p->line, "%s " VALFMT " out of range %ld-%ld per "
		    "second", k->name, v, k->min, k->max);
		return -1;
	}
	*(uint32_t *)(void *)(o + k->off) = (uint32_t)r;
	return 0;
bad:
	perr(p, p->line, "bad %s '" VALFMT "': expected N/s (new sessions "
	    "per second), e.g. 20/s", k->name, v);
	return -1;
}

static int
set_scale(struct parser *p, const struct key *k, char *o, const char *v)
{
	struct scaleexpr	*e = (struct scaleexpr *)(void *)(o + k->off);
	char			 err[SCALEEXPR_ERR_MAX];

	if (scaleexpr_parse(e, v, err, sizeof(err)) == -1) {
		perr(p, p->line, "bad %s: %s (e.g. 'ttfb_p95 > 200ms for 30s';"
		    " see docs/elastic-pools.md)", k->name, err);
		return -1;
	}
	*(bool *)(void *)(o + k->off2) = true;
	return 0;
}

static int
set_auth(struct parser *p, const struct key *k, char *o, const char *v)
{
	bool	*none = (bool *)(o + k->off);

	if (strcmp(v, "none") == 0)
		*none = true;
	else if (strcmp(v, "hmac-sha256") == 0)
		*none = false;
	else {
		perr(p, p->line, "bad %s '" VALFMT "': expected hmac-sha256 or "
		    "none", k->name, v);
		return -1;
	}
	return 0;
}

static int
set_value(struct parser *p, const struct key *k, char *o, const char *v)
{
	switch (k->type) {
	case T_INT:
		return set_int(p, k, o, v);
	case T_THREADS:
		return set_threads(p, k, o, v);
	case T_DURATION:
		return set_duration(p, k, o, v);
	case T_DURATION_US:
		return set_duration_us(p, k, o, v);
	case T_BOOL:
		return set_bool(p, k, o, v);
	case T_ENUM:
		return set_enum(p, k, o, v);
	case T_NAME:
	case T_REF:
		return set_name(p, k, o, v);
	case T_STRING:
		return set_string(p, k, o, v);
	case T_ESCAPED:
		return set_escaped(p, k, o, v);
	case T_ADDR:
	case T_ADDRLIST:
		return set_addr(p, k, o, v);
	case T_SERVER:
		return set_server(p, k, o, v);
	case T_HTTPCHECK:
		return set_httpcheck(p, k, o, v);
	case T_GROUP:
		return set_group(p, k, o, v);
	case T_CIDRLIST:
		return set_cidr(p, k, o, v);
	case T_AUTH:
		return set_auth(p, k, o, v);
	case T_RATE:
		return set_rate(p, k, o, v);
	case T_RESOLVE:
		return set_resolve(p, k, o, v);
	case T_RESOLVERS:
		return set_resolvers(p, k, o, v);
	case T_ROUTE:
		return set_route(p, k, o, v);
	case T_PATHLIST:
		return set_path(p, k, o, v);
	case T_SCALE:
		return set_scale(p, k, o, v);
	}
	perr(p, p->line, "internal error: key '%s' has no type", k->name);
	return -1;
}

static void
global_init(void *v)
{
	struct conf_global	*g = v;

	g->threads = 0;
	g->maxconn = 10000;
	g->grace_ms = 30000;
	g->log_level = LOG_LVL_INFO;
	g->io_collect_us = 0;
	g->splice = true;
	g->tls_ticket_rotate_ms = 3600000;
	g->ktls = true;
}

static void
frontend_init(void *v)
{
	struct conf_frontend	*f = v;

	f->timeout_client_ms = 60000;
	f->maxconn = 0;
	f->accept_proxy = false;
	f->timeout_proxy_ms = 3000;
	f->maxconn_per_source = 0;
	f->rate_per_source = 0;
	f->timeout_preread_ms = 5000;
	f->tls = false;
	f->tls_min = TLS_MIN_12;
	f->timeout_handshake_ms = 10000;
	f->tls_tickets = true;
}

static int
frontend_finish(struct parser *p, void *v)
{
	struct conf_frontend	*f = v;

	if (f->accept_proxy && f->nproxy_from == 0) {
		perr(p, seen_line(p, "accept_proxy"), "frontend %s: "
		    "accept_proxy = yes needs accept_proxy_from (the addresses "
		    "of the balancers allowed to send the header)", f->name);
		return -1;
	}
	if (!f->accept_proxy && f->nproxy_from > 0) {
		perr(p, seen_line(p, "accept_proxy_from"), "frontend %s: "
		    "accept_proxy_from without accept_proxy = yes", f->name);
		return -1;
	}
	if (f->tls && f->ncerts == 0) {
		perr(p, seen_line(p, "tls"), "frontend %s: tls = yes needs at "
		    "least one cert = FILE (a PEM with the chain and its key)",
		    f->name);
		return -1;
	}
	if (!f->tls) {
		static const char *const only[] = { "cert", "tls_min", "alpn",
		    "timeout_handshake", "tls_tickets" };

		for (size_t i = 0; i < nitems(only); i++)
			if (seen_line(p, only[i]) > 0) {
				perr(p, seen_line(p, only[i]), "frontend %s: "
				    "%s without tls = yes", f->name, only[i]);
				return -1;
			}
	}
	return 0;
}

static void
backend_init(void *v)
{
	struct conf_backend	*b = v;

	b->balance = BALANCE_ROUNDROBIN;
	b->timeout_connect_ms = 2000;
	b->timeout_server_ms = 60000;
	b->timeout_queue_ms = 2000;	/* = timeout_connect, see finish */
	b->retries = 2;
	b->check = CHECK_NONE;
	snprintf(b->check_http_method, sizeof(b->check_http_method), "HEAD");
	snprintf(b->check_http_path, sizeof(b->check_http_path), "/");
	b->check_port = 0;
	b->check_interval_ms = 2000;
	b->check_timeout_ms = 1000;
	b->rise = 2;
	b->fall = 3;
	b->init_state = INIT_UP;
	b->discovery = false;
	b->max_discovered = 64;
	b->resolve_min_ms = 1000;
	b->resolve_max_ms = 300000;
	b->resolve_hold_ms = 30000;
	b->scale_cooldown_ms = 60000;
	b->scale_hook_timeout_ms = 120000;
}

/* scale_hook: an absolute path to an executable, and something to run it
 * for. */
static int
backend_finish_scale(struct parser *p, struct conf_backend *b)
{
	int line = seen_line(p, "scale_hook");

	if (b->scale_hook[0] == '\0')
		return 0;
	if (!b->has_scale_up && !b->has_scale_down) {
		perr(p, line, "backend %s: scale_hook without scale_up or "
		    "scale_down: nothing would run it", b->name);
		return -1;
	}
	if (b->scale_hook[0] != '/') {
		perr(p, line, "scale_hook '" VALFMT "': expected an absolute "
		    "path", b->scale_hook);
		return -1;
	}
	if (access(b->scale_hook, X_OK) == -1) {
		perr(p, line, "scale_hook '" VALFMT "': %s", b->scale_hook,
		    errno == EACCES ? "not executable" : strerror(errno));
		return -1;
	}
	return 0;
}

/* tls = yes and its settings: complete and consistent. */
static int
backend_finish_tls(struct parser *p, struct conf_backend *b)
{
	static const char *const only[] = { "tls_verify", "tls_sni",
	    "tls_cert", "tls_alpn" };
	static const char *const check_own[] = { "check_sni",
	    "check_ca_file" };

	b->tls_line = seen_line(p, "tls");
	b->tls_verify_line = seen_line(p, "tls_verify");
	b->tls_cert_line = seen_line(p, "tls_cert");
	if (!b->tls) {
		for (size_t i = 0; i < nitems(only); i++)
			if (seen_line(p, only[i]) > 0) {
				perr(p, seen_line(p, only[i]), "backend %s: %s "
				    "without tls = yes", b->name, only[i]);
				return -1;
			}
		return 0;
	}
	if (b->tls_verify[0] == '\0') {
		perr(p, seen_line(p, "tls"), "backend %s: tls = yes needs "
		    "tls_verify = none or tls_verify = FILE (a CA bundle to "
		    "verify the servers' certificates against)", b->name);
		return -1;
	}
	for (size_t i = 0; i < nitems(check_own); i++)
		if (seen_line(p, check_own[i]) > 0) {
			perr(p, seen_line(p, check_own[i]), "backend %s: with "
			    "tls = yes, checks use tls_verify and tls_sni; "
			    "drop %s", b->name, check_own[i]);
			return -1;
		}
	return 0;
}

static int
backend_finish(struct parser *p, void *v)
{
	struct conf_backend	*b = v;

	if (seen_line(p, "timeout_queue") == 0)
		b->timeout_queue_ms = b->timeout_connect_ms;
	for (size_t i = 0; i < b->nservers; i++) {
		if (b->servers[i].init_state == INIT_UNSET)
			b->servers[i].init_state = b->init_state;
		if (b->servers[i].send_proxy == SEND_PROXY_UNSET)
			b->servers[i].send_proxy = b->send_proxy;
	}
	if (b->resolve_srv[0] != '\0' && b->resolve_name[0] != '\0') {
		perr(p, seen_line(p, "resolve_srv"), "resolve and resolve_srv "
		    "both given: choose one");
		return -1;
	}
	if (b->resolve_srv[0] != '\0' &&
	    !dns_name_ok(b->resolve_srv, strlen(b->resolve_srv))) {
		perr(p, seen_line(p, "resolve_srv"), "bad resolve_srv '"
		    VALFMT "': expected a DNS name, e.g. _http._tcp.web.consul",
		    b->resolve_srv);
		return -1;
	}
	if (b->nservers == 0 && !b->discovery && b->resolve_name[0] == '\0' &&
	    b->resolve_srv[0] == '\0') {
		perr(p, b->line, "backend %s has no servers, no resolve and "
		    "discovery is off", b->name);
		return -1;
	}
	if (b->resolve_min_ms > b->resolve_max_ms) {
		perr(p, seen_line(p, "resolve_min"), "resolve_min is above "
		    "resolve_max");
		return -1;
	}
	if (b->check == CHECK_SEND_EXPECT && b->check_expect_len == 0) {
		perr(p, seen_line(p, "check"), "check = send-expect needs a "
		    "non-empty check_expect");
		return -1;
	}
	if (backend_finish_scale(p, b) == -1)
		return -1;
	return backend_finish_tls(p, b);
}

static void
discovery_init(void *v)
{
	struct conf_discovery	*d = v;
	struct sockaddr_in	*sin = (struct sockaddr_in *)&d->group.ss;

	d->enabled = false;
	sin->sin_family = AF_INET;
	sin->sin_addr.s_addr = htonl(0xefff4c42);	/* 239.255.76.66 */
	d->group.len = sizeof(*sin);
	d->port = 7466;
	snprintf(d->interface, sizeof(d->interface), "lo");
	snprintf(d->realm, sizeof(d->realm), "shoal");
	d->key_file[0] = '\0';
	d->auth_none = false;
	d->max_skew_ms = 30000;
	d->require_source_match = true;
}

static int
discovery_finish(struct parser *p, void *v)
{
	struct conf_discovery	*d = v;
	struct sockaddr_in	*sin = (struct sockaddr_in *)&d->group.ss;
	struct sockaddr_in6	*sin6 = (struct sockaddr_in6 *)&d->group.ss;

	d->enabled = true;
	d->line = p->kind_line;
	if (d->group.ss.ss_family == AF_INET6)
		sin6->sin6_port = htons((uint16_t)d->port);
	else
		sin->sin_port = htons((uint16_t)d->port);
	if (strlen(d->interface) >= IF_NAMESIZE) {
		perr(p, seen_line(p, "interface"), "interface name too long "
		    "(max %d characters)", IF_NAMESIZE - 1);
		return -1;
	}
	if (d->nallow == 0) {
		perr(p, p->kind_line, "[discovery] needs at least one 'allow = "
		    "ADDRESS/PREFIX': announced addresses must fall inside");
		return -1;
	}
	return 0;
}

static void
stats_init(void *v)
{
	struct conf_stats *st = v;

	st->enabled = false;
	st->refresh_ms = 5000;
}

static int
stats_finish(struct parser *p, void *v)
{
	struct conf_stats *st = v;

	st->enabled = true;
	st->line = p->kind_line;
	return 0;
}

static void
admin_init(void *v)
{
	struct conf_admin *ad = v;

	ad->enabled = false;
	ad->socket[0] = '\0';
	ad->bind.len = 0;
	ad->timeout_ms = 60000;
}

static int
admin_finish(struct parser *p, void *v)
{
	struct conf_admin *ad = v;

	ad->enabled = true;
	ad->line = p->kind_line;
	if (ad->socket[0] != '\0' && ad->socket[0] != '/') {
		perr(p, seen_line(p, "socket"), "bad socket '%s': expected an "
		    "absolute path", ad->socket);
		return -1;
	}
	return 0;
}

/* The current section is complete: required keys, then its own checks. */
static int
section_finish(struct parser *p)
{
	const struct kind	*k = p->kind;
	char			 label[CONF_NAME_MAX + 32];
	size_t			 i;

	if (k == NULL)
		return 0;
	for (i = 0; i < k->nkeys; i++) {
		if ((k->keys[i].flags & K_REQUIRED) && p->seen[i] == 0) {
			perr(p, p->kind_line, "missing key '%s' in %s",
			    k->keys[i].name, section_label(p, label,
			    sizeof(label)));
			return -1;
		}
	}
	if (k->finish != NULL)
		return k->finish(p, kind_obj(p->conf, k, p->idx));
	return 0;
}

/*
 * A "[...]" line; s points at '[', len runs to the end of the line (no
 * '\n'). Ends the previous section and starts the new one.
 */
static int
section_start(struct parser *p, const char *s, size_t len)
{
	const struct kind	*k;
	const char		*close, *t, *name;
	char			 sect[CONF_LINE_MAX], *o;
	size_t			 klen, nlen, i, n, ki;

	if ((close = memchr(s, ']', len)) == NULL) {
		perr(p, p->line, "syntax error: missing ']' in section header");
		return -1;
	}
	for (t = close + 1; t < s + len && isspace((unsigned char)*t); t++)
		;
	if (t < s + len && *t != ';' && *t != '#') {
		perr(p, p->line, "syntax error: text after ']' in section "
		    "header");
		return -1;
	}
	n = (size_t)(close - s - 1);
	if (n >= sizeof(sect))
		n = sizeof(sect) - 1;
	memcpy(sect, s + 1, n);
	sect[n] = '\0';

	if (section_finish(p) == -1)
		return -1;
	p->kind = NULL;

	klen = strcspn(sect, " \t");
	name = sect + klen + strspn(sect + klen, " \t");
	nlen = strlen(name);
	while (nlen > 0 && isspace((unsigned char)name[nlen - 1]))
		nlen--;
	if ((k = kind_find(sect, klen)) == NULL) {
		perr(p, p->line, "unknown section [%.128s]", sect);
		return -1;
	}
	ki = (size_t)(k - kinds);

	if (!k->named) {
		if (nlen > 0) {
			perr(p, p->line, "section [%s] takes no name", k->name);
			return -1;
		}
		if (p->once[ki] != 0) {
			perr(p, p->line, "duplicate section [%s] (first at "
			    "line %d)", k->name, p->once[ki]);
			return -1;
		}
		p->once[ki] = p->line;
		p->idx = 0;
	} else {
		if (nlen == 0) {
			perr(p, p->line, "section [%s] needs a name: [%s NAME]",
			    k->name, k->name);
			return -1;
		}
		if (!valid_name(name, nlen)) {
			perr(p, p->line, "bad %s name '%.*s': expected "
			    NAME_RULE, k->name, (int)(nlen > 128 ? 128 : nlen),
			    name);
			return -1;
		}
		n = kind_count(p->conf, k);
		for (i = 0; i < n; i++) {
			o = kind_obj(p->conf, k, i);
			if (strlen(o + k->name_off) == nlen &&
			    memcmp(o + k->name_off, name, nlen) == 0) {
				perr(p, p->line, "duplicate section [%s %s] "
				    "(first at line %d)", k->name,
				    o + k->name_off,
				    *(int *)(void *)(o + k->line_off));
				return -1;
			}
		}
		o = list_add((char *)p->conf, k->off, k->count_off, k->size);
		if (o == NULL) {
			perr(p, p->line, "out of memory");
			return -1;
		}
		if (k->init != NULL)
			k->init(o);
		memcpy(o + k->name_off, name, nlen);
		o[k->name_off + nlen] = '\0';
		*(int *)(void *)(o + k->line_off) = p->line;
		p->idx = n;
	}
	p->kind = k;
	p->kind_line = p->line;
	memset(p->seen, 0, sizeof(p->seen));
	return 0;
}

/*
 * inih's reader: the next line of p->text into buf (fgets style). Whole
 * lines only: a longer one is an error. Section headers are handled here.
 * NULL at the end or on error.
 */
static char *
reader(char *buf, int num, void *arg)
{
	struct parser	*p = arg;
	const char	*s, *nl, *t, *end;
	size_t		 n, clen;

	if (p->failed || p->pos >= p->len)
		return NULL;
	s = p->text + p->pos;
	nl = memchr(s, '\n', p->len - p->pos);
	n = nl != NULL ? (size_t)(nl - s) + 1 : p->len - p->pos;
	clen = nl != NULL ? n - 1 : n;
	p->line++;
	p->cur = s;
	p->curlen = clen;
	if (num < 3 || clen > (size_t)num - 2) {
		perr(p, p->line, "line too long (max %d characters)", num - 2);
		return NULL;
	}
	memcpy(buf, s, n);
	buf[n] = '\0';
	p->pos += n;

	/* Look at it the way inih will. */
	t = s;
	end = s + clen;
	if (p->line == 1 && ini_allow_bom && clen >= 3 &&
	    memcmp(t, "\xEF\xBB\xBF", 3) == 0)
		t += 3;
	while (t < end && isspace((unsigned char)*t))
		t++;
	if (t < end && *t == '[' &&
	    section_start(p, t, (size_t)(end - t)) == -1)
		return NULL;
	return buf;
}

/* inih's handler: one "key = value" of the current section. */
static int
handler(void *arg, const char *section, const char *name, const char *value)
{
	struct parser		*p = arg;
	const struct kind	*k = p->kind;
	const struct key	*key;
	char			 label[CONF_NAME_MAX + 32];
	size_t			 i;
	int			 ki;

	(void)section;		/* inih's copy is truncated; ours is not */
	if (p->failed)
		return 0;
	/* inih also splits on ':'; we only take '='. */
	for (i = 0; i < p->curlen; i++)
		if (p->cur[i] == '=' || p->cur[i] == ':')
			break;
	if (i == p->curlen || p->cur[i] != '=' || *name == '\0') {
		perr(p, p->line, SYNTAX_RULE);
		return 0;
	}
	if (k == NULL) {
		perr(p, p->line, "key '%.64s' outside of any section", name);
		return 0;
	}
	if ((ki = key_index(k, name)) == -1) {
		perr(p, p->line, "unknown key '%.64s' in %s", name,
		    section_label(p, label, sizeof(label)));
		return 0;
	}
	key = &k->keys[ki];
	if (p->seen[ki] != 0 && !(key->flags & K_REPEAT)) {
		perr(p, p->line, "duplicate key '%s' (first set at line %d)",
		    key->name, p->seen[ki]);
		return 0;
	}
	if (p->seen[ki] == 0)
		p->seen[ki] = p->line;
	if (*value == '\0' && key->type != T_STRING &&
	    key->type != T_ESCAPED) {
		perr(p, p->line, "missing value for '%s'", key->name);
		return 0;
	}
	if (set_value(p, key, kind_obj(p->conf, k, p->idx), value) == -1)
		return 0;
	return 1;
}

/* Whole-file checks once every line is read. */
static int
finish(struct parser *p)
{
	const struct kind	*k, *rk;
	const struct ref	*r;
	char			*o, *ro;
	const char		*want;
	size_t			 i, j, n;

	if (section_finish(p) == -1)
		return -1;
	for (i = 0; i < nitems(kinds); i++) {
		k = &kinds[i];
		if (k->named && kind_count(p->conf, k) < k->min_count) {
			perr(p, 0, "no %s defined", k->name);
			return -1;
		}
	}
	for (i = 0; i < p->nrefs; i++) {
		r = &p->refs[i];
		o = kind_obj(p->conf, r->kind, r->idx);
		want = o + r->key->off;
		rk = kind_find(r->key->ref, strlen(r->key->ref));
		ro = NULL;
		n = rk != NULL ? kind_count(p->conf, rk) : 0;
		for (j = 0; j < n; j++) {
			ro = kind_obj(p->conf, rk, j);
			if (strcmp(ro + rk->name_off, want) == 0)
				break;
		}
		if (j == n) {
			perr(p, r->line, "%s '%s' is not defined (no [%s %s])",
			    r->key->ref, want, r->key->ref, want);
			return -1;
		}
		put_ptr(o, r->key->off2, ro);
	}
	for (i = 0; i < p->conf->nfrontends; i++) {
		const struct conf_frontend *f = &p->conf->frontends[i];

		for (j = 0; j < f->nroutes; j++)
			if (conf_backend_find(p->conf,
			    f->routes[j].backend_name) == NULL) {
				perr(p, f->routes[j].line, "route to backend "
				    "'%s' is not defined (no [backend %s])",
				    f->routes[j].backend_name,
				    f->routes[j].backend_name);
				return -1;
			}
	}
	return 0;
}

/* Parse len bytes of text; name is FILE in messages. */
static struct conf *
load(const char *name, const char *text, size_t len, char err[CONF_ERR_MAX])
{
	struct parser	 p;
	struct conf	*c;
	const char	*nul;
	size_t		 i;
	int		 rc;

	memset(&p, 0, sizeof(p));
	p.file = name;
	p.text = text;
	p.len = len;
	p.err = err;
	err[0] = '\0';

	if ((c = calloc(1, sizeof(*c))) == NULL ||
	    (c->file = strdup(name)) == NULL) {
		free(c);
		perr(&p, 0, "out of memory");
		return NULL;
	}
	p.conf = c;
	for (i = 0; i < nitems(kinds); i++)
		if (!kinds[i].named && kinds[i].init != NULL)
			kinds[i].init(kind_obj(c, &kinds[i], 0));

	if ((nul = memchr(text, '\0', len)) != NULL) {
		for (i = 0, rc = 1; text + i < nul; i++)
			if (text[i] == '\n')
				rc++;
		perr(&p, rc, "NUL byte in file");
		goto fail;
	}

	/*
	 * inih's settings are process globals: set all the ones reader()
	 * relies on, every time (whole lines in one stack buffer).
	 */
	ini_allow_multiline = false;
	ini_stop_on_first_error = true;
	ini_allow_inline_comments = true;
	ini_inline_comment_prefixes = ";";
	ini_start_comment_prefixes = ";#";
	ini_allow_no_value = false;
	ini_allow_bom = true;
	ini_use_stack = true;
	ini_allow_realloc = false;
	ini_max_line = CONF_LINE_MAX;
	rc = ini_parse_stream(reader, &p, handler, &p);
	if (!p.failed) {
		if (rc > 0)
			perr(&p, rc, SYNTAX_RULE);
		else if (rc == -2)
			perr(&p, 0, "out of memory");
		else if (rc != 0)
			perr(&p, 0, "cannot parse (inih error %d)", rc);
	}
	if (!p.failed && finish(&p) == -1)
		goto fail;
	if (p.failed)
		goto fail;
	free(p.refs);
	free(p.servers.slots);
	return c;
fail:
	free(p.refs);
	free(p.servers.slots);
	conf_free(c);
	return NULL;
}

/*
 * Load text (NUL terminated, borrowed) as a configuration; name is FILE in
 * messages. Returns a conf owned by the caller (conf_free), or NULL with
 * "FILE:LINE: message" in err.
 */
struct conf *
conf_load_string(const char *name, const char *text, char err[CONF_ERR_MAX])
{
	return load(name, text, strlen(text), err);
}

/*
 * Read the file at path and load it; path is FILE in messages. Returns a
 * conf owned by the caller (conf_free), or NULL with the error in err
 * ("PATH: cannot read: reason" when the file cannot be read).
 */
struct conf *
conf_load_file(const char *path, char err[CONF_ERR_MAX])
{
	struct conf	*c;
	char		*buf = NULL, *nbuf;
	size_t		 len = 0, cap = 0;
	ssize_t		 r;
	int		 fd, saved;
	struct stat	 st;

	/* O_NONBLOCK: opening a FIFO nobody writes to must not block the
	 * control loop (a reload); only regular files are read. */
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK)) ==
	    -1) {
		snprintf(err, CONF_ERR_MAX, "%s: cannot read: %s", path,
		    strerror(errno));
		return NULL;
	}
	if (fstat(fd, &st) == -1) {
		snprintf(err, CONF_ERR_MAX, "%s: cannot read: %s", path,
		    strerror(errno));
		close(fd);
		return NULL;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(err, CONF_ERR_MAX, "%s: cannot read: %s", path,
		    S_ISDIR(st.st_mode) ? "not a regular file (a directory)" :
		    S_ISFIFO(st.st_mode) ? "not a regular file (a FIFO)" :
		    "not a regular file");
		close(fd);
		return NULL;
	}
	for (;;) {
		if (len == cap) {
			cap = cap == 0 ? 8192 : cap * 2;
			if (cap > FILE_MAX + 1)
				cap = FILE_MAX + 1;
			if (len == cap) {
				snprintf(err, CONF_ERR_MAX, "%s: cannot read: "
				    "larger than %d bytes", path, FILE_MAX);
				goto fail;
			}
			if ((nbuf = realloc(buf, cap)) == NULL) {
				snprintf(err, CONF_ERR_MAX, "%s: cannot read: "
				    "%s", path, strerror(ENOMEM));
				goto fail;
			}
			buf = nbuf;
		}
		r = read(fd, buf + len, cap - len);
		if (r == -1 && errno == EINTR)
			continue;
		if (r == -1) {
			saved = errno;
			snprintf(err, CONF_ERR_MAX, "%s: cannot read: %s", path,
			    strerror(saved));
			goto fail;
		}
		if (r == 0)
			break;
		len += (size_t)r;
	}
	close(fd);
	c = load(path, buf != NULL ? buf : "", len, err);
	free(buf);
	return c;
fail:
	close(fd);
	free(buf);
	return NULL;
}

/* Free c and everything it owns; c may be NULL. */
void
conf_free(struct conf *c)
{
	const struct kind	*k;
	const struct key	*key;
	char			*o;
	size_t			 i, j, n;

	if (c == NULL)
		return;
	for (i = 0; i < nitems(kinds); i++) {
		k = &kinds[i];
		n = kind_count(c, k);
		for (j = 0; j < n; j++) {
			o = kind_obj(c, k, j);
			for (key = k->keys; key < k->keys + k->nkeys; key++)
				if (key->type == T_ADDRLIST ||
				    key->type == T_SERVER ||
				    key->type == T_CIDRLIST ||
				    key->type == T_ROUTE ||
				    key->type == T_PATHLIST)
					free(get_ptr(o, key->off));
		}
		if (k->named)
			free(get_ptr((char *)c, k->off));
	}
	free(c->file);
	free(c);
}

/* The backend called name in c (borrowed, inside c), or NULL. */
struct conf_backend *
conf_backend_find(const struct conf *c, const char *name)
{
	size_t	 i;

	for (i = 0; i < c->nbackends; i++)
		if (strcmp(c->backends[i].name, name) == 0)
			return &c->backends[i];
	return NULL;
}

/* Config spelling of a balance algorithm (static string). */
const char *
conf_balance_name(enum conf_balance b)
{
	if ((unsigned)b >= nitems(balance_words) - 1)
		return "?";
	return balance_words[b];
}

/* Config spelling of a check kind (static string). */
const char *
conf_check_name(enum conf_check c)
{
	if ((unsigned)c >= nitems(check_words) - 1)
		return "?";
	return check_words[c];
}

/* Config spelling of a log level (static string). */
const char *
conf_log_level_name(enum log_level l)
{
	if ((unsigned)l >= nitems(log_level_words) - 1)
		return "?";
	return log_level_words[l];
}
