/*
 * announce.c - shoal-announce: announce one backend server to shoal.
 *
 * Runs beside the server (same host, container or pod), in the foreground,
 * logging to stderr: under a supervisor (s6, systemd, docker) or from a
 * shell alike. Every `interval` (+-10 % jitter) it sends a signed datagram
 * (discovery/codec.h) to the multicast group, or to each --target by
 * unicast; twice at start (0 and 250 ms). SIGUSR1 toggles draining;
 * SIGTERM, SIGINT and SIGHUP send LEAVING three times, 50-100 ms apart,
 * and exit 0. With --check, it announces only while the local service
 * answers: one failed check announces draining, three in a row leaving,
 * the next success announces up again.
 *
 * --target NAME:PORT sends to every address NAME resolves to, looked up
 * through c-ares on the loop (resolve.c) at start and every 5 s.
 *
 * Wrapper mode (-- CMD ARGS): CMD runs as our child. SIGTERM/SIGINT send
 * LEAVING, then wait until CMD has no connection on --port (drain_cb,
 * bounded by --drain-timeout), then SIGTERM CMD and exit with its status;
 * if CMD exits by itself we leave and exit with its status.
 *
 * See docs/shoal-announce.1 and docs/discovery-protocol.md.
 */
#include <sys/types.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <ifaddrs.h>
#include <inttypes.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>

#include "codec.h"
#include "conf.h"
#include "config.h"
#include "keys.h"
#include "loadsrc.h"
#include "log.h"
#include "net.h"
#include "resolve.h"

#define ANNOUNCE_GROUP		"239.255.76.66"
#define ANNOUNCE_PORT		7466
#define ANNOUNCE_SECOND_SEND	0.25	/* s: the second datagram at start */
#define ANNOUNCE_LEAVES		3	/* LEAVING datagrams on exit */
#define ANNOUNCE_TARGETS_MAX	16
/*
 * Re-resolve --target names every 5 s: a balancer replica that appears
 * (Swarm's tasks.ha during a start-first update, docker compose --scale)
 * hears from every node within one period plus one interval, for the
 * price of one cached DNS query per node every 5 s.
 */
#define ANNOUNCE_RESOLVE_EVERY	5.0
#define DRAIN_POLL		0.05	/* s: connection count while draining */
#define DRAIN_QUIET		0.5	/* s: no connection this long = drained */
#define CHECK_FALL		3	/* failed checks before leaving */

enum check_kind {
	CHECK_KIND_NONE = 0,
	CHECK_KIND_TCP,
	CHECK_KIND_HTTP,
};

/* Where the service is announced from, and what the gate sees. */
enum gate {
	GATE_OPEN = 0,		/* announcing (no check, or check passes) */
	GATE_WAITING,		/* --check: no success yet, silent */
	GATE_FAILING,		/* some failures: announcing draining */
	GATE_CLOSED,		/* CHECK_FALL failures: left, silent */
};

struct target {
	char			 spec[300];	/* "HOST:PORT" as given */
	char			 host[256];
	uint16_t		 port;
	bool			 numeric;	/* host is an address: never
						   looked up */
	bool			 resolving;	/* a lookup is running */
	bool			 failing;	/* the last lookup failed */
	struct sockaddr_storage	 addrs[RESOLVE_ADDRS_MAX]; /* last known */
	size_t			 naddrs;	/* 0 = never resolved */
};

/* What happens once the LEAVING datagrams are out. */
enum after_leave {
	AFTER_EXIT = 0,		/* exit (no child, or the child is gone) */
	AFTER_DRAIN,		/* wait for the child's connections, stop it */
};

static struct {
	/* Options. */
	char			 pool[CODEC_POOL_MAX + 1];
	uint16_t		 port;
	char			 addr_arg[INET6_ADDRSTRLEN + 2]; /* "" = auto */
	uint16_t		 weight;
	uint32_t		 interval_ms;
	char			 iface[IF_NAMESIZE];
	struct sockaddr_storage	 group;
	socklen_t		 grouplen;
	struct target		 targets[ANNOUNCE_TARGETS_MAX];
	size_t			 ntargets;
	struct codec_key	 key;
	bool			 signed_;
	char			 realm[CODEC_REALM_MAX + 1];
	char			 label[CODEC_LABEL_MAX + 1];
	bool			 has_maxconn;
	uint32_t		 maxconn;
	enum check_kind		 check;
	char			 check_path[256];
	char			**cmd;		/* wrapper mode: the child */
	uint32_t		 drain_timeout_ms;
	const char		*load_cmd;	/* --load-cmd, or NULL */
	bool			 load_auto;	/* --load auto */
	const char		*weight_file;	/* --weight-file, or NULL */

	/* State. */
	struct ev_loop		*loop;
	struct sockaddr_storage	 addr;		/* announced address */
	socklen_t		 addrlen;	/* 0 = not known yet */
	int			 fd4, fd6;	/* sending sockets, -1 = none */
	unsigned int		 ifindex;
	uint64_t		 instance;
	uint32_t		 seq;
	bool			 draining;	/* SIGUSR1 */
	bool			 leaving;	/* exit in progress */
	int			 leaves_sent;
	bool			 ever_sent;
	enum gate		 gate;
	int			 check_fails;	/* consecutive */
	uint64_t		 rng;
	struct resolver		*resolver;
	ev_timer		 resolve_t;
	ev_timer		 announce_t, second_t, leave_t, check_t;
	ev_timer		 check_timeout_t;
	ev_io			 check_io;
	int			 check_fd;
	char			 check_buf[64];
	size_t			 check_got;
	bool			 check_sent;
	ev_signal		 sig_term, sig_int, sig_hup, sig_usr1;
	ev_signal		 sig_usr2, sig_quit, sig_winch;
	struct ratelimit	 rl_send;

	/* Wrapper mode. */
	pid_t			 child;		/* 0 = none or reaped */
	int			 child_status;	/* exit code to return */
	enum after_leave	 after_leave;
	ev_child		 child_w;
	ev_timer		 drain_t;	/* polls the connections */
	double			 drain_start, quiet_since;
	bool			 child_termed;	/* SIGTERM sent to it */

	/* Load and weight reports. */
	int			 load;		/* last load, -1 = none */
	double			 load_at;	/* ev_time() it was measured */
	struct loadsrc_cpu	 cpu_prev;	/* --load auto: last sample */
	bool			 cpu_have;
	int			 file_weight;	/* last good --weight-file, -1 */
	struct ratelimit	 rl_load, rl_weight;
	pid_t			 lcmd_pid;	/* --load-cmd running, 0 = no */
	int			 lcmd_fd;	/* its stdout */
	ev_io			 lcmd_io;
	ev_child		 lcmd_w;
	ev_timer		 lcmd_t;	/* its deadline */
	char			 lcmd_buf[LOADSRC_OUT_MAX];
	size_t			 lcmd_got;
	bool			 lcmd_exited;
	int			 lcmd_status;
} A = { .fd4 = -1, .fd6 = -1, .check_fd = -1, .load = -1,
	.file_weight = -1, .lcmd_fd = -1 };

static void	usage(FILE *);

static uint64_t
rng_next(void)
{
	uint64_t z = (A.rng += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* A uniform double in [lo, hi). */
static double
rng_between(double lo, double hi)
{
	return lo + (hi - lo) * (double)(rng_next() >> 11) /
	    9007199254740992.0;
}

static uint64_t
wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

__attribute__((noreturn, format(printf, 1, 2)))
static void
usage_error(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "shoal-announce: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n(shoal-announce --help for usage)\n");
	exit(2);
}

/* ------------------------------------------------------------------ */
/* Arguments. */

/* A numeric IPv4 or IPv6 address (brackets optional) into ss, port 0. */
static int
parse_ip(const char *s, struct sockaddr_storage *ss, socklen_t *len)
{
	struct sockaddr_in	*sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6	*sin6 = (struct sockaddr_in6 *)ss;
	char			 host[INET6_ADDRSTRLEN + 2];
	size_t			 n = strlen(s);

	if (n >= 2 && s[0] == '[' && s[n - 1] == ']') {
		s++;
		n -= 2;
	}
	if (n >= sizeof(host))
		return -1;
	memcpy(host, s, n);
	host[n] = '\0';
	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		*len = sizeof(*sin);
		return 0;
	}
	if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		*len = sizeof(*sin6);
		return 0;
	}
	return -1;
}

static socklen_t
addr_len(const struct sockaddr_storage *ss)
{
	return ss->ss_family == AF_INET ? sizeof(struct sockaddr_in) :
	    sizeof(struct sockaddr_in6);
}

/* --group ADDR[:PORT]: "239.1.2.3", "239.1.2.3:7466", "ff12::1",
 * "[ff12::1]" or "[ff12::1]:7466". */
static void
parse_group(const char *s)
{
	char		 host[INET6_ADDRSTRLEN + 2];
	const char	*colon, *end, *port = NULL;
	long		 pn = ANNOUNCE_PORT;
	const char	*why;
	size_t		 n;

	if (s[0] == '[') {
		if ((end = strchr(s, ']')) == NULL)
			usage_error("--group %s: missing ']'", s);
		n = (size_t)(end - s - 1);
		if (end[1] == ':')
			port = end + 2;
		else if (end[1] != '\0')
			usage_error("--group %s: expected [ADDR]:PORT", s);
		s++;
	} else if ((colon = strchr(s, ':')) != NULL &&
	    strchr(colon + 1, ':') == NULL) {
		n = (size_t)(colon - s);
		port = colon + 1;
	} else
		n = strlen(s);
	if (n >= sizeof(host))
		usage_error("--group: address too long");
	memcpy(host, s, n);
	host[n] = '\0';
	if (parse_ip(host, &A.group, &A.grouplen) == -1)
		usage_error("--group %s: not a numeric IP address", host);
	if (port != NULL && conf_parse_int(port, 1, 65535, &pn, &why) == -1)
		usage_error("--group port %s: %s", port, why);
	net_set_port(&A.group, (uint16_t)pn);
	if ((A.group.ss_family == AF_INET && !IN_MULTICAST(ntohl(
	    ((struct sockaddr_in *)&A.group)->sin_addr.s_addr))) ||
	    (A.group.ss_family == AF_INET6 && !IN6_IS_ADDR_MULTICAST(
	    &((struct sockaddr_in6 *)&A.group)->sin6_addr)))
		usage_error("--group %s: not a multicast address (use --target "
		    "for unicast)", host);
}

/* --target HOST:PORT or [V6]:PORT. */
static void
add_target(const char *s)
{
	struct target	*t;
	const char	*colon, *h, *why;
	size_t		 hl;
	long		 pn;

	if (A.ntargets >= ANNOUNCE_TARGETS_MAX)
		usage_error("at most %d --target", ANNOUNCE_TARGETS_MAX);
	t = &A.targets[A.ntargets];
	memset(t, 0, sizeof(*t));
	snprintf(t->spec, sizeof(t->spec), "%s", s);
	if (s[0] == '[') {
		if ((colon = strstr(s, "]:")) == NULL)
			usage_error("--target %s: expected [ADDR]:PORT", s);
		h = s + 1;
		hl = (size_t)(colon - h);
		colon++;
	} else {
		if ((colon = strrchr(s, ':')) == NULL ||
		    memchr(s, ':', (size_t)(colon - s)) != NULL)
			usage_error("--target %s: expected HOST:PORT (IPv6 in "
			    "brackets)", s);
		h = s;
		hl = (size_t)(colon - s);
	}
	if (hl == 0 || hl >= sizeof(t->host))
		usage_error("--target %s: bad host", s);
	memcpy(t->host, h, hl);
	t->host[hl] = '\0';
	if (conf_parse_int(colon + 1, 1, 65535, &pn, &why) == -1)
		usage_error("--target %s: port: %s", s, why);
	t->port = (uint16_t)pn;
	if (parse_ip(t->host, &t->addrs[0], &(socklen_t){ 0 }) == 0) {
		net_set_port(&t->addrs[0], t->port);
		t->naddrs = 1;
		t->numeric = true;
	}
	A.ntargets++;
}

static void
parse_check(const char *s)
{
	if (strcmp(s, "tcp") == 0) {
		A.check = CHECK_KIND_TCP;
		return;
	}
	if (strncmp(s, "http:", 5) == 0 && s[5] == '/' &&
	    strlen(s + 5) < sizeof(A.check_path) &&
	    strcspn(s + 5, " \t\r\n") == strlen(s + 5)) {
		A.check = CHECK_KIND_HTTP;
		snprintf(A.check_path, sizeof(A.check_path), "%s", s + 5);
		return;
	}
	usage_error("--check %s: expected tcp or http:/PATH", s);
}

static void
load_key(const char *file, long id)
{
	struct codec_key	 keys[KEYS_MAX];
	const struct codec_key	*k;
	char			 err[KEYS_ERR_MAX];
	size_t			 n;

	if (keys_load(file, keys, KEYS_MAX, &n, err) == -1) {
		fprintf(stderr, "shoal-announce: %s\n", err);
		exit(1);
	}
	if (id == -1) {
		if (n != 1) {
			keys_wipe(keys, n);
			usage_error("%s holds %zu keys: say which one signs "
			    "with --key-id", file, n);
		}
		k = &keys[0];
	} else if ((k = keys_find(keys, n, (int)id)) == NULL) {
		keys_wipe(keys, n);
		usage_error("%s has no key with id %ld", file, id);
	}
	A.key = *k;
	A.signed_ = true;
	keys_wipe(keys, n);
}

/* What the options leave for the checks after them. */
struct cli {
	const char	*key_file;
	const char	*iface;
	long		 key_id;
	bool		 have_group;
};

static void
opt_pool(const char *arg, struct cli *c)
{
	(void)c;
	if (!codec_pool_valid(arg, strlen(arg)))
		usage_error("--pool %s: expected 1-32 characters from "
		    "A-Z a-z 0-9 . _ -", arg);
	snprintf(A.pool, sizeof(A.pool), "%s", arg);
}

static void
opt_port(const char *arg, struct cli *c)
{
	const char	*why;
	long		 v;

	(void)c;
	if (conf_parse_int(arg, 1, 65535, &v, &why) == -1)
		usage_error("--port %s: %s (1-65535)", arg, why);
	A.port = (uint16_t)v;
}

static void
opt_addr(const char *arg, struct cli *c)
{
	(void)c;
	if (strcmp(arg, "auto") == 0)
		A.addr_arg[0] = '\0';
	else if (strlen(arg) >= sizeof(A.addr_arg))
		usage_error("--addr %s: too long", arg);
	else
		snprintf(A.addr_arg, sizeof(A.addr_arg), "%s", arg);
}

static void
opt_weight(const char *arg, struct cli *c)
{
	const char	*why;
	long		 v;

	(void)c;
	if (conf_parse_int(arg, 0, CODEC_WEIGHT_MAX, &v, &why) == -1)
		usage_error("--weight %s: %s (0-256)", arg, why);
	A.weight = (uint16_t)v;
}

static void
opt_interval(const char *arg, struct cli *c)
{
	const char *why;

	(void)c;
	if (conf_parse_duration(arg, &A.interval_ms, &why) == -1)
		usage_error("--interval %s: %s", arg, why);
	if (A.interval_ms < 100)
		usage_error("--interval %s: at least 100ms", arg);
}

static void
opt_iface(const char *arg, struct cli *c)
{
	c->iface = arg;
}

static void
opt_group(const char *arg, struct cli *c)
{
	parse_group(arg);
	c->have_group = true;
}

static void
opt_target(const char *arg, struct cli *c)
{
	(void)c;
	add_target(arg);
}

static void
opt_key_file(const char *arg, struct cli *c)
{
	c->key_file = arg;
}

static void
opt_key_id(const char *arg, struct cli *c)
{
	const char *why;

	if (conf_parse_int(arg, 1, 255, &c->key_id, &why) == -1)
		usage_error("--key-id %s: %s (1-255)", arg, why);
}

static void
opt_realm(const char *arg, struct cli *c)
{
	(void)c;
	if (strlen(arg) > CODEC_REALM_MAX)
		usage_error("--realm: at most %d bytes", CODEC_REALM_MAX);
	snprintf(A.realm, sizeof(A.realm), "%s", arg);
}

static void
opt_label(const char *arg, struct cli *c)
{
	(void)c;
	snprintf(A.label, sizeof(A.label), "%s", arg);
	for (const char *p = arg; *p != '\0'; p++)
		if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
			usage_error("--label: printable ASCII only");
	if (strlen(arg) > CODEC_LABEL_MAX)
		usage_error("--label: at most %d characters", CODEC_LABEL_MAX);
}

static void
opt_check(const char *arg, struct cli *c)
{
	(void)c;
	parse_check(arg);
}

static void
opt_maxconn(const char *arg, struct cli *c)
{
	const char	*why;
	long		 v;

	(void)c;
	if (conf_parse_int(arg, 0, 1000000, &v, &why) == -1)
		usage_error("--maxconn %s: %s", arg, why);
	A.has_maxconn = true;
	A.maxconn = (uint32_t)v;
}

static void
opt_load_cmd(const char *arg, struct cli *c)
{
	(void)c;
	if (arg[0] == '\0')
		usage_error("--load-cmd: empty command");
	A.load_cmd = arg;
}

static void
opt_load(const char *arg, struct cli *c)
{
	(void)c;
	if (strcmp(arg, "auto") != 0)
		usage_error("--load %s: only 'auto' (the host's CPU use) is "
		    "known; for anything else use --load-cmd", arg);
	A.load_auto = true;
}

static void
opt_weight_file(const char *arg, struct cli *c)
{
	(void)c;
	A.weight_file = arg;
}

static void
opt_drain_timeout(const char *arg, struct cli *c)
{
	const char *why;

	(void)c;
	if (conf_parse_duration(arg, &A.drain_timeout_ms, &why) == -1)
		usage_error("--drain-timeout %s: %s", arg, why);
}

/* The long options that take a value, each with its handler; getopt_long
 * sees them in this order (prefixes are matched against it). */
static const struct {
	const char	*name;
	void		(*set)(const char *, struct cli *);
} options[] = {
	{ "pool", opt_pool },
	{ "port", opt_port },
	{ "addr", opt_addr },
	{ "weight", opt_weight },
	{ "interval", opt_interval },
	{ "iface", opt_iface },
	{ "group", opt_group },
	{ "target", opt_target },
	{ "key-file", opt_key_file },
	{ "key-id", opt_key_id },
	{ "realm", opt_realm },
	{ "label", opt_label },
	{ "check", opt_check },
	{ "maxconn", opt_maxconn },
	{ "drain-timeout", opt_drain_timeout },
	{ "load-cmd", opt_load_cmd },
	{ "load", opt_load },
	{ "weight-file", opt_weight_file },
};
#define NOPTIONS	(sizeof(options) / sizeof(options[0]))
#define OPT_BASE	256	/* getopt value of options[0] */

/* Stage 1: the options, one handler each; the command after "--". */
static void
read_options(int argc, char *argv[], struct cli *c)
{
	static struct option longopts[NOPTIONS + 4];
	int ch;

	for (size_t i = 0; i < NOPTIONS; i++)
		longopts[i] = (struct option){ options[i].name,
		    required_argument, NULL, OPT_BASE + (int)i };
	longopts[NOPTIONS] = (struct option){ "verbose", no_argument, NULL,
	    'v' };
	longopts[NOPTIONS + 1] = (struct option){ "help", no_argument, NULL,
	    'h' };
	longopts[NOPTIONS + 2] = (struct option){ "version", no_argument,
	    NULL, 'V' };
	/* "+": stop at the first non-option, so the command's own options
	 * after "--" stay its own. */
	while ((ch = getopt_long(argc, argv, "+vhV", longopts, NULL)) != -1) {
		if (ch >= OPT_BASE && ch < OPT_BASE + (int)NOPTIONS) {
			options[ch - OPT_BASE].set(optarg, c);
			continue;
		}
		switch (ch) {
		case 'v':
			log_set_level(LOG_LVL_DEBUG);
			break;
		case 'h':
			usage(stdout);
			exit(0);
		case 'V':
			printf("shoal-announce %s\n", SHOAL_VERSION);
			exit(0);
		default:
			usage(stderr);
			exit(2);
		}
	}
	if (optind != argc) {
		if (strcmp(argv[optind - 1], "--") != 0)
			usage_error("unexpected argument '%s' (a command to "
			    "run goes after --)", argv[optind]);
		A.cmd = &argv[optind];
	}
}

/* Stage 2: what is required, and the signing key. */
static void
check_required(const struct cli *c)
{
	if (A.pool[0] == '\0' || A.port == 0)
		usage_error("--pool and --port are required");
	if (c->key_id != -1 && c->key_file == NULL)
		usage_error("--key-id needs --key-file");
	if (c->key_file != NULL)
		load_key(c->key_file, c->key_id);
	if (A.load_cmd != NULL && A.load_auto)
		usage_error("--load-cmd and --load auto exclude each other");
}

/* Stage 3: where announcements go: the group (default one if none) on an
 * interface, or the targets. */
static void
choose_destination(struct cli *c)
{
	if (c->have_group && A.ntargets > 0)
		usage_error("--group and --target exclude each other");
	if (!c->have_group) {
		parse_group(ANNOUNCE_GROUP);
		net_set_port(&A.group, ANNOUNCE_PORT);
	}
	if (c->iface == NULL && A.ntargets == 0) {
		if (A.group.ss_family == AF_INET6)
			usage_error("an IPv6 group needs --iface");
		c->iface = "lo";
	}
	if (c->iface != NULL) {
		if (strlen(c->iface) >= sizeof(A.iface))
			usage_error("--iface %s: name too long", c->iface);
		snprintf(A.iface, sizeof(A.iface), "%s", c->iface);
		if ((A.ifindex = if_nametoindex(c->iface)) == 0)
			usage_error("--iface %s: no such interface", c->iface);
	}
}

/* Stage 4: the announced address, which must match the group's family. */
static void
check_addr(void)
{
	if (A.addr_arg[0] != '\0' && parse_ip(A.addr_arg, &A.addr,
	    &A.addrlen) == -1)
		usage_error("--addr %s: expected a numeric IP address or auto",
		    A.addr_arg);
	if (A.addrlen != 0 && A.ntargets == 0 &&
	    A.addr.ss_family != A.group.ss_family)
		usage_error("--addr %s and --group are not the same address "
		    "family", A.addr_arg);
}

/* Stage 5: settings that are allowed but probably not what was meant. */
static void
warn_odd(void)
{
	if (!A.cmd && A.drain_timeout_ms != 8000)
		log_warnx("--drain-timeout applies only with a command "
		    "(-- CMD ...)");
	if (A.interval_ms > 17000)
		log_warnx("--interval above 17s: the ttl (3.5 x interval) is "
		    "clamped to 60s by shoal");
}

/* The command line into A, or exit: 2 and a message on bad usage. */
static void
parse_args(int argc, char *argv[])
{
	struct cli c = { .key_id = -1 };

	A.weight = 1;
	A.interval_ms = 1000;
	A.drain_timeout_ms = 8000;
	snprintf(A.realm, sizeof(A.realm), "shoal");
	read_options(argc, argv, &c);
	check_required(&c);
	choose_destination(&c);
	check_addr();
	warn_odd();
}

static void
usage(FILE *f)
{
	fprintf(f,
"usage: shoal-announce --pool NAME --port N [options] [-- CMD [ARGS...]]\n"
"\n"
"Announce one backend server to shoal, signed, until stopped. Runs in the\n"
"foreground and logs to stderr. With -- CMD, runs the service as its child\n"
"and stops it only once shoal has stopped sending it sessions (below).\n"
"\n"
"  --pool NAME          shoal backend to join (1-32 of A-Z a-z 0-9 . _ -)\n"
"  --port N             TCP port of the announced service\n"
"  --addr A|auto        announced IP address (default auto: the address of\n"
"                       --iface, or the source address towards --target);\n"
"                       datagrams are sent from it when it is local\n"
"  --weight W           0-256 (default 1)\n"
"  --interval D         time between announcements, with a unit: 500ms, 2s\n"
"                       (default 1s; +-10%% jitter; ttl = 3.5 x interval)\n"
"  --iface IF           send multicast on this interface (default lo;\n"
"                       required for an IPv6 group)\n"
"  --group ADDR[:PORT]  multicast group (default 239.255.76.66:7466);\n"
"                       IPv6 as ff12::4c42:4431 or [ff12::4c42:4431]:7466\n"
"  --target NAME:PORT   send unicast to shoal instead (repeatable), for\n"
"                       networks without multicast (e.g. Docker overlays):\n"
"                       to every address NAME resolves to, looked up again\n"
"                       every 5 s (a name that stops resolving keeps its\n"
"                       last addresses)\n"
"  --key-file F         sign with a key from F (lines 'ID HEXKEY', mode 0600)\n"
"  --key-id K           which key of F (needed when F holds several)\n"
"                       without --key-file datagrams are unsigned: only a\n"
"                       shoal with 'auth = none' accepts them\n"
"  --realm R            MAC realm, as shoal's [discovery] realm\n"
"                       (default shoal)\n"
"  --label TEXT         free text shown in shoal's stats (max 63)\n"
"  --maxconn N          ask shoal to cap sessions to this server\n"
"  --check tcp|http:/PATH\n"
"                       announce only while the service answers: a failed\n"
"                       check announces draining, 3 in a row leaving; the\n"
"                       next success announces up again\n"
"  --drain-timeout D    with -- CMD: longest wait for the service's\n"
"                       connections to end after leaving (default 8s)\n"
"  --load-cmd CMD       report the server's load: sh -c CMD runs once per\n"
"                       interval and prints a number 0-100 (0 idle, 100\n"
"                       saturated) on its first line; shoal lowers the\n"
"                       server's weight as the load grows (never below\n"
"                       10 %%); a failing command reports nothing\n"
"  --load auto          report the host's CPU use over the last interval\n"
"                       (/proc/stat) as the load\n"
"                       both also report the connections established to\n"
"                       --port\n"
"  --weight-file F      announce the weight written in F (0-256, read at\n"
"                       every announcement; --weight while F is missing\n"
"                       or wrong)\n"
"  -v, --verbose        log every datagram sent\n"
"  -h, --help           this help;  -V, --version  the version\n"
"\n"
"Signals: SIGUSR1 toggles draining (no new sessions); SIGTERM, SIGINT or\n"
"SIGHUP send LEAVING three times, 50-100 ms apart, and exit 0. Exit 1 on\n"
"a runtime error at start, 2 on a usage error.\n"
"\n"
"With -- CMD (wrapper mode): SIGTERM or SIGINT sends LEAVING, waits until\n"
"no connection to --port is left for 0.5 s (at most --drain-timeout), then\n"
"sends SIGTERM to CMD and exits with its status; SIGHUP, SIGUSR2, SIGQUIT\n"
"and SIGWINCH are passed to CMD. If CMD exits by itself: LEAVING, then\n"
"exit with its status (128+N if killed by signal N).\n"
"\n"
"Example (same host as shoal's default configuration):\n"
"  shoal-announce --pool app --port 8081\n"
"Example (lab container, signed, unicast to every balancer named ha,\n"
"running the web app as its child):\n"
"  shoal-announce --pool app --port 3000 --target ha:7466 \\\n"
"      --key-file /run/shoal/discovery.key --realm ait-lab4 \\\n"
"      --check http:/healthz -- node /opt/webapp/app.js\n"
"\n"
"See shoal-announce(1) and docs/discovery-protocol.md.\n");
}

/* ------------------------------------------------------------------ */
/* Sockets and addresses. */

/* The first usable address of family fam on the interface; 0 or -1. */
static int
iface_addr(int fam, struct sockaddr_storage *ss, socklen_t *len)
{
	struct ifaddrs		*ifa, *i;
	const struct sockaddr_in6 *sin6;
	int			 rc = -1;

	if (getifaddrs(&ifa) == -1)
		return -1;
	for (i = ifa; i != NULL; i = i->ifa_next) {
		if (i->ifa_addr == NULL || i->ifa_addr->sa_family != fam ||
		    strcmp(i->ifa_name, A.iface) != 0)
			continue;
		if (fam == AF_INET6) {
			sin6 = (const void *)i->ifa_addr;
			if (IN6_IS_ADDR_LINKLOCAL(&sin6->sin6_addr))
				continue;
			*len = sizeof(struct sockaddr_in6);
		} else
			*len = sizeof(struct sockaddr_in);
		memset(ss, 0, sizeof(*ss));
		memcpy(ss, i->ifa_addr, *len);
		if (fam == AF_INET6)
			((struct sockaddr_in6 *)ss)->sin6_scope_id = 0;
		rc = 0;
		break;
	}
	freeifaddrs(ifa);
	return rc;
}

static void	send_one(void);
static bool	gate_allows(void);

/* A --target's set of addresses, for the log: "a, b, c". */
static const char *
target_addrs_str(const struct target *t, char *buf, size_t len)
{
	char	 abuf[NET_ADDRSTRLEN];
	size_t	 i, o = 0;

	buf[0] = '\0';
	for (i = 0; i < t->naddrs && o < len; i++)
		o += (size_t)snprintf(buf + o, len - o, "%s%s", i ? ", " : "",
		    net_host_str((const struct sockaddr *)&t->addrs[i], abuf,
		    sizeof(abuf)));
	return buf;
}

static bool
target_addrs_equal(const struct target *t, const struct sockaddr_storage *a,
    size_t n)
{
	size_t i;

	if (n != t->naddrs)
		return false;
	for (i = 0; i < n; i++)
		if (memcmp(&a[i], &t->addrs[i], sizeof(a[i])) != 0)
			return false;
	return true;
}

/* The answer for one --target: a new set replaces the old; a failure keeps
 * the last known set. The first answer ever announces at once. */
static void
target_resolved_cb(void *arg, const char *name,
    const struct sockaddr_storage *addrs, size_t n, const char *err)
{
	struct target	*t = arg;
	char		 buf[RESOLVE_ADDRS_MAX * (NET_ADDRSTRLEN + 2)];
	bool		 first = A.addrlen == 0;

	t->resolving = false;
	if (err != NULL) {
		if (!t->failing)
			log_warnx("--target %s: %s does not resolve (%s); %s",
			    t->spec, name, err, t->naddrs ? "keeping its last "
			    "addresses" : "nothing to send to yet");
		t->failing = true;
		return;
	}
	if (t->failing)
		log_info("--target %s resolves again", t->spec);
	t->failing = false;
	if (target_addrs_equal(t, addrs, n))
		return;
	memcpy(t->addrs, addrs, n * sizeof(addrs[0]));
	t->naddrs = n;
	log_info("--target %s: sending to %s", t->spec,
	    target_addrs_str(t, buf, sizeof(buf)));
	if (first && !A.leaving && gate_allows() && A.ever_sent == false)
		send_one();
}

/* Look every --target name up again (no-op for numeric ones, and for a
 * name whose previous lookup is still running). */
static void
resolve_targets(void)
{
	struct target	*t;
	size_t		 i;

	for (i = 0; i < A.ntargets; i++) {
		t = &A.targets[i];
		if (t->numeric || t->resolving)
			continue;
		/* Set first: the callback may run inside (hosts file). */
		t->resolving = true;
		if (resolver_start(A.resolver, t->host, AF_UNSPEC, t->port,
		    target_resolved_cb, t) == -1) {
			t->resolving = false;
			log_warn("--target %s", t->spec);
		}
	}
}

/*
 * Work out the announced address when it is auto: the interface's address
 * for multicast, the source address towards the first resolved target for
 * unicast. 0, or -1 (not known yet: try again later).
 */
static int
resolve_addr(void)
{
	const struct sockaddr_storage *dst;
	struct sockaddr_storage	 ss;
	socklen_t		 len;
	size_t			 i, j;
	int			 fd;

	if (A.addrlen != 0)
		return 0;
	if (A.ntargets == 0) {
		if (iface_addr(A.group.ss_family, &A.addr, &A.addrlen) == -1)
			return -1;
		return 0;
	}
	for (i = 0; i < A.ntargets; i++)
		for (j = 0; j < A.targets[i].naddrs; j++) {
		dst = &A.targets[i].addrs[j];
		fd = socket(dst->ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
		if (fd == -1)
			continue;
		len = sizeof(ss);
		if (connect(fd, (const struct sockaddr *)dst,
		    addr_len(dst)) == 0 &&
		    getsockname(fd, (struct sockaddr *)&ss, &len) == 0) {
			close(fd);
			memcpy(&A.addr, &ss, len);
			A.addrlen = len;
			net_set_port(&A.addr, 0);
			if (ss.ss_family == AF_INET6)
				((struct sockaddr_in6 *)&A.addr)->
				    sin6_scope_id = 0;
			return 0;
		}
		close(fd);
		}
	return -1;
}

/* A sending socket of this family, bound to the announced address when it
 * is local (so that shoal sees it as the source). */
static int
open_sender(int fam)
{
	struct sockaddr_storage	 b;
	struct ip_mreqn		 mr;
	int			 fd, one = 1, ttl = 1;
	char			 abuf[NET_ADDRSTRLEN];

	if ((fd = socket(fam, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0))
	    == -1) {
		log_warn("socket");
		return -1;
	}
	if (A.addrlen != 0 && A.addr.ss_family == fam) {
		memcpy(&b, &A.addr, A.addrlen);
		net_set_port(&b, 0);
		if (bind(fd, (struct sockaddr *)&b, A.addrlen) == -1)
			log_warn("cannot send from %s (not a local address?); "
			    "shoal must then set require_source_match = no",
			    net_host_str((struct sockaddr *)&b, abuf,
			    sizeof(abuf)));
	}
	if (A.ntargets > 0)
		return fd;
	if (fam == AF_INET) {
		memset(&mr, 0, sizeof(mr));
		mr.imr_ifindex = (int)A.ifindex;
		if (A.addrlen != 0 && A.addr.ss_family == AF_INET)
			mr.imr_address =
			    ((struct sockaddr_in *)&A.addr)->sin_addr;
		if (setsockopt(fd, IPPROTO_IP, IP_MULTICAST_IF, &mr,
		    sizeof(mr)) == -1)
			log_warn("IP_MULTICAST_IF %s", A.iface);
		(void)setsockopt(fd, IPPROTO_IP, IP_MULTICAST_TTL, &ttl,
		    sizeof(ttl));
		(void)setsockopt(fd, IPPROTO_IP, IP_MULTICAST_LOOP, &one,
		    sizeof(one));
	} else {
		if (setsockopt(fd, IPPROTO_IPV6, IPV6_MULTICAST_IF, &A.ifindex,
		    sizeof(A.ifindex)) == -1)
			log_warn("IPV6_MULTICAST_IF %s", A.iface);
		(void)setsockopt(fd, IPPROTO_IPV6, IPV6_MULTICAST_HOPS, &ttl,
		    sizeof(ttl));
		(void)setsockopt(fd, IPPROTO_IPV6, IPV6_MULTICAST_LOOP, &one,
		    sizeof(one));
	}
	return fd;
}

static int *
sender_for(int fam)
{
	int *fdp = fam == AF_INET ? &A.fd4 : &A.fd6;

	if (*fdp == -1)
		*fdp = open_sender(fam);
	return fdp;
}

/* ------------------------------------------------------------------ */
/* The load and weight reports. */

static int	port_connections(void);

/* The --load-cmd run is over (output closed and the process reaped). */
static void
lcmd_finish(void)
{
	const char	*why;
	int		 v;

	ev_timer_stop(A.loop, &A.lcmd_t);
	A.lcmd_pid = 0;
	if (A.lcmd_status != 0) {
		if (log_ratelimit(&A.rl_load, 1))
			log_warnx("--load-cmd: %s %d; no load reported",
			    A.lcmd_status > 128 ? "killed by signal" :
			    "exit status", A.lcmd_status > 128 ?
			    A.lcmd_status - 128 : A.lcmd_status);
		A.load = -1;
		return;
	}
	if (loadsrc_parse_load(A.lcmd_buf, A.lcmd_got, &v, &why) == -1) {
		char	 shown[41];
		size_t	 i;

		/* Its first line, at most 40 bytes, printable only. */
		for (i = 0; i < A.lcmd_got && i < sizeof(shown) - 1 &&
		    A.lcmd_buf[i] != '\n'; i++)
			shown[i] = A.lcmd_buf[i] >= 0x20 && A.lcmd_buf[i] < 0x7f ?
			    A.lcmd_buf[i] : '?';
		shown[i] = '\0';
		if (log_ratelimit(&A.rl_load, 1))
			log_warnx("--load-cmd printed '%s': %s; no load "
			    "reported", shown, why);
		A.load = -1;
		return;
	}
	if (v != A.load)
		log_debug("load %d (from --load-cmd)", v);
	A.load = v;
	A.load_at = ev_time();
}

static void
lcmd_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	char	 sink[512];
	ssize_t	 r;

	(void)revents;
	if (A.lcmd_got < sizeof(A.lcmd_buf))
		r = read(w->fd, A.lcmd_buf + A.lcmd_got,
		    sizeof(A.lcmd_buf) - A.lcmd_got);
	else
		r = read(w->fd, sink, sizeof(sink));	/* beyond: dropped */
	if (r > 0) {
		if (A.lcmd_got < sizeof(A.lcmd_buf))
			A.lcmd_got += (size_t)r;
		return;
	}
	if (r == -1 && (errno == EAGAIN || errno == EINTR))
		return;
	ev_io_stop(loop, w);
	close(A.lcmd_fd);
	A.lcmd_fd = -1;
	if (A.lcmd_exited)
		lcmd_finish();
}

static void
lcmd_child_cb(struct ev_loop *loop, ev_child *w, int revents)
{
	int st = w->rstatus;

	(void)revents;
	ev_child_stop(loop, w);
	A.lcmd_exited = true;
	A.lcmd_status = WIFEXITED(st) ? WEXITSTATUS(st) :
	    WIFSIGNALED(st) ? 128 + WTERMSIG(st) : 1;
	if (A.lcmd_fd == -1)
		lcmd_finish();
}

/* Too slow: kill its process group; the child callback ends the run.
 * Or it exited and something it left running holds its output: what it
 * wrote is what counts. */
static void
lcmd_timeout_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	(void)loop;
	(void)t;
	(void)revents;
	if (A.lcmd_pid == 0)
		return;
	if (A.lcmd_exited) {	/* exited; a process it left holds the pipe */
		ev_io_stop(A.loop, &A.lcmd_io);
		if (A.lcmd_fd != -1)
			close(A.lcmd_fd);
		A.lcmd_fd = -1;
		lcmd_finish();
		return;
	}
	if (log_ratelimit(&A.rl_load, 1))
		log_warnx("--load-cmd still running after %u ms: killed",
		    A.interval_ms);
	(void)kill(-A.lcmd_pid, SIGKILL);
	if (A.lcmd_fd != -1) {		/* a grandchild may hold the pipe */
		ev_io_stop(A.loop, &A.lcmd_io);
		close(A.lcmd_fd);
		A.lcmd_fd = -1;
	}
}

/* Run --load-cmd once in the background (if it is not still running):
 * sh -c CMD, stdout to us, stderr to our log, its own process group. */
static void
lcmd_start(void)
{
	sigset_t	 none;
	pid_t		 pid;
	int		 p[2];

	if (A.lcmd_pid != 0)
		return;
	if (pipe2(p, O_CLOEXEC) == -1) {
		log_warn("--load-cmd: pipe");
		return;
	}
	if ((pid = fork()) == -1) {
		log_warn("--load-cmd: fork");
		close(p[0]);
		close(p[1]);
		return;
	}
	if (pid == 0) {
		int devnull = open("/dev/null", O_RDONLY);

		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		signal(SIGPIPE, SIG_DFL);
		(void)setpgid(0, 0);
		(void)prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (devnull != -1)
			(void)dup2(devnull, 0);
		(void)dup2(p[1], 1);
		execl("/bin/sh", "sh", "-c", A.load_cmd, (char *)NULL);
		_exit(127);
	}
	close(p[1]);
	(void)fcntl(p[0], F_SETFL, O_NONBLOCK);
	A.lcmd_pid = pid;
	A.lcmd_fd = p[0];
	A.lcmd_got = 0;
	A.lcmd_exited = false;
	ev_io_set(&A.lcmd_io, p[0], EV_READ);
	ev_io_start(A.loop, &A.lcmd_io);
	ev_child_set(&A.lcmd_w, pid, 0);
	ev_child_start(A.loop, &A.lcmd_w);
	ev_timer_set(&A.lcmd_t, A.interval_ms < 1000 ? 1.0 :
	    A.interval_ms / 1000.0, 0);
	ev_timer_start(A.loop, &A.lcmd_t);
}

/* The weight to announce: --weight-file's when it reads well. */
static uint16_t
weight_now(void)
{
	char		 buf[64];
	const char	*why;
	ssize_t		 n;
	int		 fd, w;

	if (A.weight_file == NULL)
		return A.weight;
	if ((fd = open(A.weight_file, O_RDONLY | O_CLOEXEC | O_NONBLOCK)) ==
	    -1) {
		why = strerror(errno);
		goto bad;
	}
	n = read(fd, buf, sizeof(buf));
	close(fd);
	if (n < 0) {
		why = strerror(errno);
		goto bad;
	}
	if (loadsrc_parse_weight(buf, (size_t)n, &w, &why) == -1)
		goto bad;
	if (w != A.file_weight)
		log_info("weight %d (from %s)", w, A.weight_file);
	A.file_weight = w;
	return (uint16_t)w;
bad:
	if (A.file_weight != -1 || log_ratelimit(&A.rl_weight, 1))
		log_warnx("--weight-file %s: %s; announcing weight %u",
		    A.weight_file, why, A.weight);
	A.file_weight = -1;
	return A.weight;
}

/* The load TLV of the next datagram, and the next measurement. */
static void
load_fill(struct codec_msg *m)
{
	struct loadsrc_cpu	 now;
	int			 n;

	if (A.load_cmd == NULL && !A.load_auto)
		return;
	if (A.load_auto && loadsrc_cpu_read(&now) == 0) {
		if (A.cpu_have && (n = loadsrc_cpu_busy(&A.cpu_prev, &now)) >=
		    0) {
			A.load = n;
			A.load_at = ev_time();
		}
		A.cpu_prev = now;
		A.cpu_have = true;
	}
	/* A value is sent while it is at most 2 intervals old, and at least
	 * 2 s (a command runs at most once per interval and 1 s). */
	if (A.load >= 0 && ev_time() - A.load_at <= 2 * (A.interval_ms <
	    1000 ? 1.0 : A.interval_ms / 1000.0)) {
		m->has_load = true;
		m->load = (uint8_t)A.load;
		if ((n = port_connections()) >= 0) {
			m->has_conns = true;
			m->conns = (uint32_t)n;
		}
	}
	if (A.load_cmd != NULL)
		lcmd_start();
}

/* ------------------------------------------------------------------ */
/* Sending. */

static const char *
state_now(uint8_t *st)
{
	if (A.leaving || A.gate == GATE_CLOSED)
		*st = CODEC_LEAVING;
	else if (A.draining || A.gate == GATE_FAILING)
		*st = CODEC_DRAINING;
	else
		*st = CODEC_UP;
	return codec_state_name(*st);
}

/* Send one datagram with the current state to the group or every target. */
static void
send_one(void)
{
	struct codec_msg	 m;
	uint8_t			 buf[CODEC_MAX];
	char			 dbuf[NET_ADDRSTRLEN];
	const char		*why = NULL, *st;
	struct sockaddr		*dst;
	struct target		*t;
	socklen_t		 dlen;
	size_t			 i, ndst;
	ssize_t			 r;
	int			 len, *fdp;

	if (resolve_addr() == -1) {
		if (log_ratelimit(&A.rl_send, 1))
			log_warnx("no address to announce yet (%s); retrying",
			    A.ntargets > 0 ? "no --target resolved" :
			    "interface has no address");
		return;
	}
	memset(&m, 0, sizeof(m));
	st = state_now(&m.state);
	m.ipv6 = A.addr.ss_family == AF_INET6;
	if (m.ipv6)
		memcpy(m.addr, &((struct sockaddr_in6 *)&A.addr)->sin6_addr,
		    16);
	else
		memcpy(m.addr, &((struct sockaddr_in *)&A.addr)->sin_addr, 4);
	m.port = A.port;
	m.weight = weight_now();
	load_fill(&m);
	m.ttl_ms = A.interval_ms / 2 * 7;
	m.seq = ++A.seq;
	m.instance = A.instance;
	m.timestamp_ms = wall_ms();
	snprintf(m.pool, sizeof(m.pool), "%s", A.pool);
	snprintf(m.label, sizeof(m.label), "%s", A.label);
	m.has_maxconn = A.has_maxconn;
	m.maxconn = A.maxconn;
	len = codec_encode(&m, A.signed_ ? &A.key : NULL, A.realm, buf,
	    sizeof(buf), &why);
	if (len == -1) {
		/* Only a bad --addr gets here (e.g. multicast, ::1 mapped). */
		log_warnx("cannot encode the announcement: %s", why);
		return;
	}
	ndst = A.ntargets > 0 ? A.ntargets * RESOLVE_ADDRS_MAX : 1;
	for (i = 0; i < ndst; i++) {
		if (A.ntargets > 0) {
			t = &A.targets[i / RESOLVE_ADDRS_MAX];
			if (i % RESOLVE_ADDRS_MAX >= t->naddrs)
				continue;
			dst = (struct sockaddr *)&t->addrs[i %
			    RESOLVE_ADDRS_MAX];
			/* The datagram names an address of one family, and
			 * shoal wants it to be the source address. */
			if (dst->sa_family != A.addr.ss_family)
				continue;
			dlen = addr_len(&t->addrs[i % RESOLVE_ADDRS_MAX]);
		} else {
			dst = (struct sockaddr *)&A.group;
			dlen = A.grouplen;
		}
		fdp = sender_for(dst->sa_family);
		if (*fdp == -1)
			continue;
		r = sendto(*fdp, buf, (size_t)len, 0, dst, dlen);
		if (r == -1) {
			if (log_ratelimit(&A.rl_send, 1))
				log_warn("send to %s", net_addr_str(dst, dbuf,
				    sizeof(dbuf)));
			/* The network may have changed: start afresh. */
			close(*fdp);
			*fdp = -1;
			continue;
		}
		A.ever_sent = true;
		log_debug("sent %s seq %" PRIu32 " to %s (%d bytes)", st,
		    m.seq, net_addr_str(dst, dbuf, sizeof(dbuf)), len);
	}
}

static bool
gate_allows(void)
{
	return A.gate == GATE_OPEN || A.gate == GATE_FAILING;
}

static void
schedule_next(void)
{
	double	 iv = A.interval_ms / 1000.0;

	ev_timer_stop(A.loop, &A.announce_t);
	ev_timer_set(&A.announce_t, rng_between(iv * 0.9, iv * 1.1), 0);
	ev_timer_start(A.loop, &A.announce_t);
}

static void
announce_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	(void)loop;
	(void)t;
	(void)revents;
	if (gate_allows())
		send_one();
	schedule_next();
}

static void
second_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	(void)loop;
	(void)t;
	(void)revents;
	if (gate_allows())
		send_one();
}

/* Start announcing: now, again 250 ms later, then every interval. */
static void
announce_begin(void)
{
	send_one();
	ev_timer_stop(A.loop, &A.second_t);
	ev_timer_set(&A.second_t, ANNOUNCE_SECOND_SEND, 0);
	ev_timer_start(A.loop, &A.second_t);
	schedule_next();
}

/* ------------------------------------------------------------------ */
/* Leaving, and the child of wrapper mode. */

static void	drain_begin(void);

static void
leave_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	(void)revents;
	send_one();
	if (++A.leaves_sent >= ANNOUNCE_LEAVES) {
		if (A.after_leave == AFTER_DRAIN)
			drain_begin();
		else
			ev_break(loop, EVBREAK_ALL);
		return;
	}
	ev_timer_set(t, rng_between(0.05, 0.1), 0);
	ev_timer_start(loop, t);
}

static void check_stop(void);

/* Stop announcing UP: send LEAVING three times, then do what A.after_leave
 * says. */
static void
leave_begin(const char *why)
{
	A.leaving = true;
	ev_timer_stop(A.loop, &A.announce_t);
	ev_timer_stop(A.loop, &A.second_t);
	ev_timer_stop(A.loop, &A.check_t);
	check_stop();
	if (!A.ever_sent) {
		log_info("%s: never announced, %s", why,
		    A.after_leave == AFTER_DRAIN ? "stopping the service" :
		    "exiting");
		if (A.after_leave == AFTER_DRAIN)
			drain_begin();
		else
			ev_break(A.loop, EVBREAK_ALL);
		return;
	}
	log_info("%s: leaving", why);
	A.leaves_sent = 0;
	leave_cb(A.loop, &A.leave_t, 0);
}

/*
 * The service's connections on --port that are still in use (established,
 * being accepted, or closed by the peer but not yet by the service), from
 * /proc/net/tcp and tcp6 of this network namespace. -1 if unreadable.
 */
static int
port_connections(void)
{
	static const char *const files[] = { "/proc/net/tcp",
	    "/proc/net/tcp6" };
	char		 line[512];
	unsigned int	 lport, st;
	FILE		*f;
	int		 n = 0, opened = 0;

	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		if ((f = fopen(files[i], "re")) == NULL)
			continue;
		opened++;
		while (fgets(line, sizeof(line), f) != NULL) {
			/* "  0: 0100007F:0BB8 0100007F:D2F4 01 ..." */
			if (sscanf(line, " %*u: %*[0-9A-Fa-f]:%x %*[0-9A-Fa-f]"
			    ":%*x %x", &lport, &st) != 2 || lport != A.port)
				continue;
			if (st == 0x01 || st == 0x03 || st == 0x08)
				n++;	/* ESTABLISHED, SYN_RECV, CLOSE_WAIT */
		}
		fclose(f);
	}
	return opened ? n : -1;
}

static void
child_term(const char *why)
{
	if (A.child == 0 || A.child_termed)
		return;
	log_info("%s: sending SIGTERM to the service (pid %ld)", why,
	    (long)A.child);
	A.child_termed = true;
	ev_timer_stop(A.loop, &A.drain_t);
	(void)kill(A.child, SIGTERM);
	(void)kill(A.child, SIGCONT);
}

/*
 * After LEAVING: shoal sends no new session. Wait until the service has had
 * no connection for DRAIN_QUIET (connects shoal started just before it
 * heard us are still arriving), at most --drain-timeout, then stop it.
 */
static void
drain_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	double	 now = ev_time();
	int	 n;

	(void)loop;
	(void)revents;
	if ((n = port_connections()) == -1) {
		log_warn("cannot read /proc/net/tcp: not waiting");
		child_term("drain");
		return;
	}
	if (n > 0)
		A.quiet_since = now;
	if (now - A.quiet_since >= DRAIN_QUIET) {
		log_info("drained in %.0f ms: no connection to port %u left",
		    (now - A.drain_start) * 1000, A.port);
		child_term("drained");
		return;
	}
	if ((now - A.drain_start) * 1000 >= A.drain_timeout_ms) {
		log_warnx("--drain-timeout: %d connection%s to port %u still "
		    "open after %u ms", n, n == 1 ? "" : "s", A.port,
		    A.drain_timeout_ms);
		child_term("drain timeout");
		return;
	}
	ev_timer_set(t, DRAIN_POLL, 0);
	ev_timer_start(A.loop, t);
}

static void
drain_begin(void)
{
	if (A.child == 0) {
		ev_break(A.loop, EVBREAK_ALL);
		return;
	}
	A.drain_start = A.quiet_since = ev_time();
	drain_cb(A.loop, &A.drain_t, 0);
}

/* The child is gone: keep its status; leave first if it went on its own. */
static void
child_cb(struct ev_loop *loop, ev_child *w, int revents)
{
	int st = w->rstatus;

	(void)revents;
	ev_child_stop(loop, w);
	A.child = 0;
	ev_timer_stop(loop, &A.drain_t);
	if (WIFEXITED(st))
		A.child_status = WEXITSTATUS(st);
	else if (WIFSIGNALED(st))
		A.child_status = 128 + WTERMSIG(st);
	else
		A.child_status = 1;
	if (A.child_termed) {
		log_info("the service exited (status %d)", A.child_status);
		ev_break(loop, EVBREAK_ALL);
		return;
	}
	if (WIFSIGNALED(st))
		log_warnx("the service was killed by signal %d",
		    WTERMSIG(st));
	else
		log_warnx("the service exited by itself (status %d)",
		    A.child_status);
	A.after_leave = AFTER_EXIT;
	if (A.leaving) {
		/* Already leaving: the LEAVING datagrams go on, then exit. */
		if (A.leaves_sent >= ANNOUNCE_LEAVES)
			ev_break(loop, EVBREAK_ALL);
		return;
	}
	leave_begin("service gone");
}

/* Start the service, in its own process group (a signal to our group does
 * not reach it before we are done draining), killed if we die. */
static void
child_start(void)
{
	sigset_t	 none;
	pid_t		 pid, parent = getpid();

	if ((pid = fork()) == -1) {
		log_warn("fork");
		exit(1);
	}
	if (pid == 0) {
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		signal(SIGPIPE, SIG_DFL);
		(void)setpgid(0, 0);
		(void)prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(111);
		execvp(A.cmd[0], A.cmd);
		fprintf(stderr, "shoal-announce: cannot run %s: %s\n",
		    A.cmd[0], strerror(errno));
		_exit(127);
	}
	A.child = pid;
	ev_child_set(&A.child_w, pid, 0);
	ev_child_start(A.loop, &A.child_w);
	log_info("started %s (pid %ld)", A.cmd[0], (long)pid);
}

static void
signal_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
	(void)revents;
	if (w->signum == SIGUSR1) {
		if (A.leaving)
			return;
		A.draining = !A.draining;
		log_info("SIGUSR1: %s", A.draining ? "draining (no new "
		    "sessions)" : "up again");
		if (gate_allows())
			send_one();
		return;
	}
	if (A.cmd != NULL && w->signum != SIGTERM && w->signum != SIGINT) {
		/* SIGHUP, SIGUSR2, SIGQUIT, SIGWINCH: the service's. */
		if (A.child != 0)
			(void)kill(A.child, w->signum);
		return;
	}
	if (A.leaving) {
		if (A.child != 0) {
			child_term(strsignal(w->signum));
			return;
		}
		log_info("%s again: exiting now", strsignal(w->signum));
		ev_break(loop, EVBREAK_ALL);
		return;
	}
	leave_begin(strsignal(w->signum));
}

static void
resolve_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	(void)loop;
	(void)t;
	(void)revents;
	resolve_targets();
}

/* ------------------------------------------------------------------ */
/* The local check (--check), non-blocking. */

static void
check_stop(void)
{
	ev_io_stop(A.loop, &A.check_io);
	ev_timer_stop(A.loop, &A.check_timeout_t);
	if (A.check_fd != -1)
		close(A.check_fd);
	A.check_fd = -1;
}

static void
check_done(bool ok, const char *detail)
{
	enum gate was = A.gate;

	check_stop();
	if (A.leaving)
		return;
	if (ok) {
		A.check_fails = 0;
		A.gate = GATE_OPEN;
		if (was == GATE_WAITING || was == GATE_CLOSED) {
			log_info("check passed: announcing");
			announce_begin();
		} else if (was == GATE_FAILING) {
			log_info("check passed again: up");
			send_one();
		}
		return;
	}
	A.check_fails++;
	if (was == GATE_WAITING || was == GATE_CLOSED) {
		if (A.check_fails == 1)
			log_warnx("check failed (%s): not announcing", detail);
		return;
	}
	if (A.check_fails >= CHECK_FALL) {
		log_warnx("check failed %d times (%s): leaving", A.check_fails,
		    detail);
		A.gate = GATE_CLOSED;
		send_one();	/* LEAVING, then silence */
		return;
	}
	if (was == GATE_OPEN) {
		log_warnx("check failed (%s): draining", detail);
		A.gate = GATE_FAILING;
		send_one();
	}
}

static void
check_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	char		 req[512], host[NET_ADDRSTRLEN];
	ssize_t		 r;
	int		 n;

	(void)loop;
	(void)revents;
	if (!A.check_sent) {
		if (net_connect_result(w->fd) == -1) {
			check_done(false, strerror(errno));
			return;
		}
		if (A.check == CHECK_KIND_TCP) {
			check_done(true, "connected");
			return;
		}
		net_addr_str((struct sockaddr *)&A.addr, host, sizeof(host));
		n = snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\nHost: %s\r\n"
		    "User-Agent: shoal-announce\r\nConnection: close\r\n\r\n",
		    A.check_path, host);
		if (n < 0 || (size_t)n >= sizeof(req) ||
		    send(w->fd, req, (size_t)n, MSG_NOSIGNAL) != n) {
			check_done(false, "cannot send request");
			return;
		}
		A.check_sent = true;
		A.check_got = 0;
		ev_io_stop(A.loop, w);
		ev_io_set(w, w->fd, EV_READ);
		ev_io_start(A.loop, w);
		return;
	}
	r = recv(w->fd, A.check_buf + A.check_got,
	    sizeof(A.check_buf) - 1 - A.check_got, 0);
	if (r == -1 && (errno == EAGAIN || errno == EINTR))
		return;
	if (r <= 0) {
		check_done(false, r == 0 ? "connection closed before the "
		    "status line" : strerror(errno));
		return;
	}
	A.check_got += (size_t)r;
	A.check_buf[A.check_got] = '\0';
	if (strstr(A.check_buf, "\r\n") == NULL &&
	    A.check_got < sizeof(A.check_buf) - 1)
		return;
	if (strncmp(A.check_buf, "HTTP/1.", 7) == 0 && A.check_got >= 12 &&
	    A.check_buf[8] == ' ' &&
	    (A.check_buf[9] == '2' || A.check_buf[9] == '3'))
		check_done(true, "HTTP 2xx/3xx");
	else {
		A.check_buf[strcspn(A.check_buf, "\r\n")] = '\0';
		check_done(false, A.check_buf);
	}
}

static void
check_timeout_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	(void)loop;
	(void)t;
	(void)revents;
	check_done(false, "timeout");
}

static void
check_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct sockaddr_storage	 ss;
	double			 to;

	(void)revents;
	ev_timer_set(t, A.interval_ms / 1000.0, 0);
	ev_timer_start(loop, t);
	if (A.check_fd != -1 || A.leaving)
		return;		/* the previous one is still running */
	if (resolve_addr() == -1) {
		check_done(false, "no address yet");
		return;
	}
	memcpy(&ss, &A.addr, A.addrlen);
	net_set_port(&ss, A.port);
	if ((A.check_fd = net_connect((struct sockaddr *)&ss, A.addrlen))
	    == -1) {
		check_done(false, strerror(errno));
		return;
	}
	A.check_sent = false;
	ev_io_set(&A.check_io, A.check_fd, EV_WRITE);
	ev_io_start(loop, &A.check_io);
	to = A.interval_ms / 2000.0;
	ev_timer_set(&A.check_timeout_t, to < 0.1 ? 0.1 : to > 2 ? 2 : to, 0);
	ev_timer_start(loop, &A.check_timeout_t);
}

/* ------------------------------------------------------------------ */

/* A supervisor or shell may hand us blocked or ignored signals. */
static void
signals_reset(void)
{
	sigset_t none;

	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	signal(SIGPIPE, SIG_IGN);
}

/* This run's instance id and the jitter PRNG. 0 or -1 (logged). */
static int
seed(void)
{
	if (getrandom(&A.instance, sizeof(A.instance), 0) !=
	    sizeof(A.instance) || getrandom(&A.rng, sizeof(A.rng), 0) !=
	    sizeof(A.rng)) {
		log_warn("getrandom");
		return -1;
	}
	if (A.instance == 0)
		A.instance = 1;
	return 0;
}

/* The loop, its timers and the signals we follow (more with a command).
 * 0 or -1 (logged). */
static int
loop_init(void)
{
	if ((A.loop = ev_default_loop(EVFLAG_AUTO)) == NULL) {
		log_warnx("cannot initialise libev");
		return -1;
	}
	ev_timer_init(&A.announce_t, announce_cb, 0, 0);
	ev_timer_init(&A.second_t, second_cb, 0, 0);
	ev_timer_init(&A.leave_t, leave_cb, 0, 0);
	ev_timer_init(&A.check_t, check_cb, 0, 0);
	ev_timer_init(&A.check_timeout_t, check_timeout_cb, 0, 0);
	ev_io_init(&A.check_io, check_io_cb, -1, EV_WRITE);
	ev_signal_init(&A.sig_term, signal_cb, SIGTERM);
	ev_signal_init(&A.sig_int, signal_cb, SIGINT);
	ev_signal_init(&A.sig_hup, signal_cb, SIGHUP);
	ev_signal_init(&A.sig_usr1, signal_cb, SIGUSR1);
	ev_signal_start(A.loop, &A.sig_term);
	ev_signal_start(A.loop, &A.sig_int);
	ev_signal_start(A.loop, &A.sig_hup);
	ev_signal_start(A.loop, &A.sig_usr1);
	ev_timer_init(&A.drain_t, drain_cb, 0, 0);
	ev_child_init(&A.child_w, child_cb, 0, 0);
	ev_io_init(&A.lcmd_io, lcmd_io_cb, -1, EV_READ);
	ev_child_init(&A.lcmd_w, lcmd_child_cb, 0, 0);
	ev_timer_init(&A.lcmd_t, lcmd_timeout_cb, 0, 0);
	if (A.cmd != NULL) {
		A.after_leave = AFTER_DRAIN;
		ev_signal_init(&A.sig_usr2, signal_cb, SIGUSR2);
		ev_signal_init(&A.sig_quit, signal_cb, SIGQUIT);
		ev_signal_init(&A.sig_winch, signal_cb, SIGWINCH);
		ev_signal_start(A.loop, &A.sig_usr2);
		ev_signal_start(A.loop, &A.sig_quit);
		ev_signal_start(A.loop, &A.sig_winch);
	}
	return 0;
}

/* Resolve the targets (and again every ANNOUNCE_RESOLVE_EVERY) and the
 * address to announce; a missing address is retried, not fatal. 0 or -1. */
static int
resolve_start(void)
{
	if (A.ntargets > 0) {
		if ((A.resolver = resolver_new(A.loop)) == NULL)
			return -1;
		resolve_targets();
		ev_timer_init(&A.resolve_t, resolve_cb, ANNOUNCE_RESOLVE_EVERY,
		    ANNOUNCE_RESOLVE_EVERY);
		ev_timer_start(A.loop, &A.resolve_t);
	}
	if (resolve_addr() == -1)
		log_warnx("no address to announce yet (%s); will retry",
		    A.ntargets > 0 ? "no --target resolved" :
		    "interface has no address");
	return 0;
}

/* One line saying what will be announced, where and how. */
static void
log_start(void)
{
	char abuf[NET_ADDRSTRLEN], dbuf[NET_ADDRSTRLEN + 320];

	if (A.ntargets > 0)
		snprintf(dbuf, sizeof(dbuf), "%s%s", A.targets[0].spec,
		    A.ntargets > 1 ? " and more" : "");
	else {
		net_addr_str((struct sockaddr *)&A.group, abuf, sizeof(abuf));
		snprintf(dbuf, sizeof(dbuf), "%s on %s", abuf, A.iface);
	}
	log_info("announcing pool %s, %s port %u, to %s every %ums (ttl "
	    "%ums, weight %u, instance %016" PRIx64 ", %s%s%s%s)", A.pool,
	    A.addrlen ? net_host_str((struct sockaddr *)&A.addr, abuf,
	    sizeof(abuf)) : "address ?", A.port, dbuf, A.interval_ms,
	    A.interval_ms / 2 * 7, A.weight, A.instance,
	    A.signed_ ? "signed" : "UNSIGNED",
	    A.check == CHECK_KIND_NONE ? "" : ", gated by --check ",
	    A.check == CHECK_KIND_HTTP ? "http:" : A.check == CHECK_KIND_TCP ?
	    "tcp" : "", A.check == CHECK_KIND_HTTP ? A.check_path : "");
}

/* Announce now, or first wait for --check to pass. */
static void
gate_start(void)
{
	if (A.check != CHECK_KIND_NONE) {
		A.gate = GATE_WAITING;
		ev_timer_set(&A.check_t, 0, 0);
		ev_timer_start(A.loop, &A.check_t);
	} else {
		A.gate = GATE_OPEN;
		announce_begin();
	}
}

/* After the loop: free what we hold; the exit status (the service's if
 * we ran one). */
static int
finish(void)
{
	check_stop();
	ev_timer_stop(A.loop, &A.resolve_t);
	resolver_free(A.resolver);
	if (A.fd4 != -1)
		close(A.fd4);
	if (A.fd6 != -1)
		close(A.fd6);
	keys_wipe(&A.key, 1);
	if (A.cmd != NULL) {
		log_info("exiting with the service's status %d",
		    A.child_status);
		return A.child_status;
	}
	log_info("exiting");
	return 0;
}

int
main(int argc, char *argv[])
{
	signals_reset();
	parse_args(argc, argv);
	if (seed() == -1 || loop_init() == -1 || resolve_start() == -1)
		return 1;
	log_start();
	if (A.cmd != NULL)
		child_start();
	gate_start();
	ev_run(A.loop, 0);
	return finish();
}
