/*
 * conf.h - shoal's configuration: INI loading (inih), validation, defaults.
 *
 * The loader is table driven: each section kind is one entry in a table of
 * sections, each key one entry in a table of keys (type, offset, bounds,
 * whether it may repeat). Adding a section is adding table entries.
 *
 * Every error is reported as "FILE:LINE: message"; a config that was not
 * fully understood is never returned.
 */
#ifndef SHOAL_CONF_H
#define SHOAL_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "scaleexpr.h"

#define CONF_NAME_MAX	64		/* section/server names, incl. NUL */
#define CONF_ERR_MAX	512
#define CONF_LINE_MAX	1024		/* longest line + "\n\0" */

enum conf_balance {
	BALANCE_ROUNDROBIN = 0,
	BALANCE_LEASTCONN,
	BALANCE_SOURCE,
	BALANCE_RANDOM,
	BALANCE_FIRST,
};

enum conf_check {
	CHECK_NONE = 0,
	CHECK_TCP,
	CHECK_HTTP,
	CHECK_TLS,
	CHECK_SEND_EXPECT,
};

enum log_level {
	LOG_LVL_ERROR = 0,
	LOG_LVL_WARN,
	LOG_LVL_INFO,
	LOG_LVL_DEBUG,
};

/* The health a server starts with when its backend has checks. */
enum conf_init_state {
	INIT_UP = 0,		/* eligible at once; the first check runs at once */
	INIT_CHECKING,		/* no traffic until `rise` checks pass */
	INIT_DOWN,		/* down until `rise` checks pass (first at once) */
	INIT_UNSET = -1,	/* server line without one, while parsing */
};

/* The PROXY protocol header sent to servers (lb/proxyproto.h). */
enum conf_send_proxy {
	SEND_PROXY_NONE = 0,
	SEND_PROXY_V1 = 1,
	SEND_PROXY_V2 = 2,
	SEND_PROXY_UNSET = -1,	/* server line without one: the backend's */
};

struct conf_addr {
	struct sockaddr_storage	 ss;		/* AF_INET or AF_INET6, port set */
	socklen_t		 len;		/* sizeof the family's sockaddr */
	int			 line;		/* where it was given */
};

struct conf_server {
	char			 name[CONF_NAME_MAX];
	struct conf_addr	 addr;
	int			 weight;	/* 0..256, default 1 */
	int			 maxconn;	/* 0 = unlimited */
	bool			 backup;	/* only used when no primary is */
	enum conf_init_state	 init_state;	/* default: the backend's */
	enum conf_send_proxy	 send_proxy;	/* default: the backend's */
	int			 line;
};

struct conf_backend {
	char			 name[CONF_NAME_MAX];
	enum conf_balance	 balance;	/* default roundrobin */
	struct conf_server	*servers;	/* "server" lines, in order */
	size_t			 nservers;
	uint32_t		 timeout_connect_ms; /* default 2s */
	uint32_t		 timeout_server_ms;  /* default 60s */
	uint32_t		 timeout_queue_ms;   /* default = timeout_connect */
	int			 retries;	/* default 2 */
	uint32_t		 slowstart_ms;	/* 0 = none (default) */
	enum conf_send_proxy	 send_proxy;	/* default none */
	/* health checks (health/) */
	enum conf_check		 check;		/* default none */
	char			 check_http_method[16];	/* default "HEAD" */
	char			 check_http_path[256];	/* default "/" */
	char			 check_http_host[256];	/* default: server address */
	char			 check_send[256];	/* send-expect, C escapes decoded */
	size_t			 check_send_len;
	char			 check_expect[256];	/* expected reply prefix */
	size_t			 check_expect_len;
	char			 check_sni[256];	/* tls: SNI, "" = none */
	char			 check_ca_file[256];	/* tls: verify against, "" = no verify */
	int			 check_port;	/* 0 = the server's port */
	uint32_t		 check_interval_ms; /* default 2s */
	uint32_t		 check_timeout_ms;  /* default 1s */
	int			 rise;		/* default 2 */
	int			 fall;		/* default 3 */
	enum conf_init_state	 init_state;	/* static servers; default up */
	bool			 check_send_proxy; /* checks send a LOCAL header */
	/* DNS discovery (discovery/dns.c) */
	char			 resolve_name[254]; /* resolve = NAME:PORT; "" = off */
	int			 resolve_port;
	char			 resolve_srv[254]; /* _service._proto.NAME; "" = off */
	char			 resolvers[512]; /* "ADDR:PORT,..."; "" = resolv.conf */
	uint32_t		 resolve_min_ms;  /* default 1s */
	uint32_t		 resolve_max_ms;  /* default 300s */
	uint32_t		 resolve_hold_ms; /* empty answers before the set
						     empties; default 30s */
	/* TLS origination (lb/tls.c) */
	bool			 tls;		/* tls = yes: servers speak TLS */
	char			 tls_verify[256]; /* CA bundle; "none" = no
						     verification; "" = unset
						     (refused with tls) */
	char			 tls_sni[254];	/* SNI sent; "" = the client's
						   when terminating, else none */
	char			 tls_cert[256];	/* client certificate; "" = none */
	char			 tls_alpn[256];	/* offered; "" = none */
	int			 tls_line;	/* lines of tls, tls_verify and */
	int			 tls_verify_line; /* tls_cert, for errors */
	int			 tls_cert_line;
	/* discovery (discovery/) */
	bool			 discovery;	/* accept announced servers */
	int			 max_discovered; /* default 64 */
	/* Scaling (lb/scale.c): conditions, their hook, its pacing. */
	bool			 has_scale_up, has_scale_down;
	struct scaleexpr	 scale_up, scale_down;
	uint32_t		 scale_cooldown_ms; /* default 60s */
	char			 scale_hook[256]; /* absolute path; "" = none */
	uint32_t		 scale_hook_timeout_ms; /* default 2m */
	int			 line;		/* the [backend NAME] line */
};

/* A file named in the configuration (cert = FILE, repeatable). */
struct conf_path {
	char			 path[256];
	int			 line;
};

/* TLS protocol floors (tls_min). */
enum conf_tls_min {
	TLS_MIN_12 = 0,		/* TLS 1.2 (default) */
	TLS_MIN_13,		/* TLS 1.3 only */
};

/* [frontend] route = PATTERN BACKEND: by the TLS ClientHello's SNI. */
struct conf_route {
	char			 pattern[256];	/* "api.example.com", "*.example.com" */
	char			 backend_name[CONF_NAME_MAX];
	int			 line;
};

struct conf_frontend {
	char			 name[CONF_NAME_MAX];
	struct conf_addr	*binds;		/* "bind" lines, at least one */
	size_t			 nbinds;
	char			 backend_name[CONF_NAME_MAX];
	struct conf_backend	*backend;	/* resolved, points into conf */
	uint32_t		 timeout_client_ms; /* default 60s */
	int			 maxconn;	/* 0 = only the global cap */
	/* Client identity (lb/clientid.c). */
	struct conf_cidr	*allow;		/* may connect; none = everyone */
	size_t			 nallow;
	struct conf_cidr	*deny;		/* may not; wins over allow */
	size_t			 ndeny;
	bool			 accept_proxy;	/* a PROXY header comes first */
	struct conf_cidr	*proxy_from;	/* accept_proxy_from: who may
						   send it (required with it) */
	size_t			 nproxy_from;
	uint32_t		 timeout_proxy_ms; /* default 3s */
	int			 maxconn_per_source; /* 0 = no cap */
	uint32_t		 rate_per_source; /* new sessions/s, 0 = no cap */
	struct conf_route	*routes;	/* by SNI, first match wins */
	size_t			 nroutes;
	uint32_t		 timeout_preread_ms; /* default 5s */
	/* TLS termination (lb/tls.c). */
	bool			 tls;		/* tls = yes: clients speak TLS */
	struct conf_path	*certs;		/* cert = FILE: chain and key;
						   the first is the default */
	size_t			 ncerts;
	enum conf_tls_min	 tls_min;	/* default 1.2 */
	char			 alpn[256];	/* offered: "h2,http/1.1"; "" =
						   no ALPN */
	uint32_t		 timeout_handshake_ms; /* default 10s */
	bool			 tls_tickets;	/* resumption by tickets, default
						   yes */
	int			 line;
};

struct conf_global {
	int			 threads;	/* 0 = auto (one per CPU) */
	int			 maxconn;	/* default 10000 */
	uint32_t		 grace_ms;	/* default 30s */
	enum log_level		 log_level;	/* default info */
	uint32_t		 io_collect_us;	/* default 0: poll at once */
	bool			 splice;	/* default yes */
	uint32_t		 tls_ticket_rotate_ms; /* ticket key period,
						   default 1h; 0 = never */
	bool			 ktls;		/* kernel TLS where offered,
						   default yes */
};

struct conf_cidr {
	struct sockaddr_storage	 ss;		/* network address (port unused) */
	int			 prefix;	/* 0..32 or 0..128 */
	int			 line;
};

/* [discovery]: the announcement listener (discovery/). */
struct conf_discovery {
	bool			 enabled;	/* the section is present */
	struct conf_addr	 group;		/* group address; port from `port` */
	int			 port;		/* default 7466 */
	char			 interface[32];	/* join the group here; default "lo" */
	char			 realm[64];	/* default "shoal" */
	char			 key_file[256];	/* "" = none */
	bool			 auth_none;	/* auth = none: accept unsigned */
	struct conf_cidr	*allow;		/* announced addresses must match */
	size_t			 nallow;
	uint32_t		 max_skew_ms;	/* default 30s */
	bool			 require_source_match; /* default yes */
	int			 line;		/* the [discovery] line */
};

/* [stats]: the stats page, JSON and Prometheus metrics (lb/stats.c). */
struct conf_stats {
	bool			 enabled;	/* the section is present */
	struct conf_addr	 bind;		/* required in the section */
	uint32_t		 refresh_ms;	/* HTML page refresh, default 5s */
	int			 line;		/* the [stats] line */
};

/* [admin]: the admin socket (lb/admin.c). */
struct conf_admin {
	bool			 enabled;	/* the section is present */
	char			 socket[108];	/* unix socket path; "" = default:
						   $RUNTIME_DIRECTORY/admin.sock
						   or /run/shoal/admin.sock */
	struct conf_addr	 bind;		/* optional TCP; len 0 = none */
	uint32_t		 timeout_ms;	/* idle clients closed; default 60s */
	int			 line;		/* the [admin] line */
};

struct conf {
	char			*file;		/* name used in messages */
	struct conf_global	 global;
	struct conf_frontend	*frontends;
	size_t			 nfrontends;
	struct conf_backend	*backends;
	size_t			 nbackends;
	struct conf_discovery	 discovery;
	struct conf_stats	 stats;
	struct conf_admin	 admin;
};

/* The embedded default configuration (shoal started without -c). */
extern const char conf_default_text[];

/*
 * Load and validate a configuration file. Returns a conf owned by the
 * caller (conf_free), or NULL with a "FILE:LINE: message" (or "FILE: message"
 * when no line applies, e.g. the file cannot be read) in err.
 */
struct conf	*conf_load_file(const char *path, char err[CONF_ERR_MAX]);

/* Same, from text in memory; name is used as FILE in messages. */
struct conf	*conf_load_string(const char *name, const char *text,
		    char err[CONF_ERR_MAX]);

/* Free a conf; accepts NULL. */
void		 conf_free(struct conf *);

/* Find a backend by name; NULL if none. */
struct conf_backend *conf_backend_find(const struct conf *, const char *name);

/*
 * Value parsers, exported for reuse (admin socket, announcer) and tests.
 * Each returns 0 on success, -1 with a short reason in *why (static string).
 */
int		 conf_parse_duration(const char *s, uint32_t *ms, const char **why);
int		 conf_parse_addr(const char *s, struct conf_addr *a, const char **why);
int		 conf_parse_int(const char *s, long min, long max, long *v,
		    const char **why);
int		 conf_parse_bool(const char *s, bool *v, const char **why);

/*
 * Whether a parsed address may be a server's (not 0.0.0.0, ::, nor
 * multicast). Returns 0, or -1 with a short reason in *why (static string).
 */
int		 conf_check_server_addr(const struct conf_addr *a,
		    const char **why);

const char	*conf_balance_name(enum conf_balance);
const char	*conf_check_name(enum conf_check);
const char	*conf_log_level_name(enum log_level);

#endif /* SHOAL_CONF_H */
