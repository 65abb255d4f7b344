/*
 * test_conf.c - configuration loader: a full config field by field, the
 * embedded default, a table of bad configs with their exact messages, and
 * the exported value parsers.
 */
#include <sys/socket.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf.h"
#include "t.h"

/* A valid frontend (3 lines) and backend (2 lines) to build on. */
#define FE	"[frontend web]\nbind = 127.0.0.1:80\nbackend = app\n"
#define BE	"[backend app]\nserver = s1 127.0.0.1:81\n"

static const char good[] =
	"; a full configuration\n"				/* 1 */
	"[global]\n"
	"threads = 4\n"
	"maxconn = 5000\n"
	"grace = 1m\n"						/* 5 */
	"log_level = debug\n"
	"\n"
	"[frontend web]   ; its backend comes later\n"
	"bind = 0.0.0.0:80\n"
	"bind = [::]:80\n"					/* 10 */
	"  bind=[2001:db8::1]:8443\n"
	"backend = app\n"
	"timeout_client = 30s\n"
	"maxconn = 100\n"
	"\n"							/* 15 */
	"[backend app]\n"
	"balance = leastconn\n"
	"server = s1 10.0.0.1:3000 weight=2 maxconn=100\n"
	"server = s2 [2001:db8::2]:3000 backup\n"
	"server = s3\t10.0.0.3:3000  weight=0  ; drained\n"	/* 20 */
	"timeout_connect = 500ms\n"
	"timeout_server = 2m\n"
	"retries = 0\n"
	"check = http\n"
	"check_http = GET /health?full=1\n"			/* 25 */
	"check_host = app.example\n"
	"check_port = 8081\n"
	"check_interval = 250ms\n"
	"check_timeout = 100ms\n"
	"rise = 1\n"						/* 30 */
	"fall = 5\n"
	"discovery = yes\n"
	"max_discovered = 10\n"
	"\n"
	"[backend other]\n"					/* 35 */
	"discovery = on\n"
	"check = send-expect\n"
	"check_send = PING\\r\\n\n"
	"check_expect = +PONG\\x0d\\x0A\n"
	"timeout_queue = 0s\n"					/* 40 */
	"\n"
	"[frontend second]\n"
	"bind = 127.0.0.1:81\n"
	"backend = other\n"
	"[backend unused]\n"					/* 45 */
	"server = u1 127.0.0.1:9\n"
	"check = tls\n"
	"check_sni = db.internal\n"
	"check_ca_file = /etc/shoal/ca file.pem\n"
	"check_send =\n";					/* 50 */

static const char *
addr_str(const struct conf_addr *a, char *buf, size_t sz)
{
	const struct sockaddr_in	*sin = (const void *)&a->ss;
	const struct sockaddr_in6	*sin6 = (const void *)&a->ss;
	char				 host[INET6_ADDRSTRLEN];

	if (a->ss.ss_family == AF_INET) {
		inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
		snprintf(buf, sz, "%s:%u", host, ntohs(sin->sin_port));
	} else if (a->ss.ss_family == AF_INET6) {
		inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host));
		snprintf(buf, sz, "[%s]:%u", host, ntohs(sin6->sin6_port));
	} else
		snprintf(buf, sz, "family %d", a->ss.ss_family);
	return buf;
}

static void
test_good(void)
{
	struct conf		*c;
	struct conf_frontend	*f;
	struct conf_backend	*b;
	char			 err[CONF_ERR_MAX], buf[128];

	c = conf_load_string("t.ini", good, err);
	ok(c != NULL, "good config loads%s%s", c ? "" : ": ", c ? "" : err);
	if (c == NULL)
		return;
	ok(strcmp(c->file, "t.ini") == 0, "file name kept");

	is_int(c->global.threads, 4, "global threads");
	is_int(c->global.maxconn, 5000, "global maxconn");
	is_int(c->global.grace_ms, 60000, "global grace 1m");
	is_int(c->global.log_level, LOG_LVL_DEBUG, "global log_level");

	is_int(c->nfrontends, 2, "two frontends");
	f = &c->frontends[0];
	ok(strcmp(f->name, "web") == 0, "frontend name");
	is_int(f->line, 8, "frontend line");
	is_int(f->nbinds, 3, "three binds");
	ok(strcmp(addr_str(&f->binds[0], buf, sizeof(buf)), "0.0.0.0:80") == 0,
	    "bind 0 is %s", buf);
	is_int(f->binds[0].len, sizeof(struct sockaddr_in), "IPv4 len");
	is_int(f->binds[0].line, 9, "bind 0 line");
	ok(strcmp(addr_str(&f->binds[1], buf, sizeof(buf)), "[::]:80") == 0,
	    "bind 1 is %s", buf);
	is_int(f->binds[1].len, sizeof(struct sockaddr_in6), "IPv6 len");
	ok(strcmp(addr_str(&f->binds[2], buf, sizeof(buf)),
	    "[2001:db8::1]:8443") == 0, "bind 2 is %s", buf);
	is_int(f->binds[2].line, 11, "bind 2 line");
	ok(strcmp(f->backend_name, "app") == 0, "backend name");
	ok(f->backend == &c->backends[0], "backend resolved to [backend app]");
	is_int(f->timeout_client_ms, 30000, "timeout_client");
	is_int(f->maxconn, 100, "frontend maxconn");
	ok(c->frontends[1].backend == &c->backends[1],
	    "second frontend resolved to [backend other]");

	is_int(c->nbackends, 3, "three backends");
	b = &c->backends[0];
	ok(strcmp(b->name, "app") == 0, "backend name app");
	is_int(b->line, 16, "backend line");
	is_int(b->balance, BALANCE_LEASTCONN, "balance");
	is_int(b->nservers, 3, "three servers");
	ok(strcmp(b->servers[0].name, "s1") == 0, "server 0 name");
	ok(strcmp(addr_str(&b->servers[0].addr, buf, sizeof(buf)),
	    "10.0.0.1:3000") == 0, "server 0 addr %s", buf);
	is_int(b->servers[0].weight, 2, "server 0 weight");
	is_int(b->servers[0].maxconn, 100, "server 0 maxconn");
	ok(!b->servers[0].backup, "server 0 not backup");
	is_int(b->servers[0].line, 18, "server 0 line");
	ok(strcmp(addr_str(&b->servers[1].addr, buf, sizeof(buf)),
	    "[2001:db8::2]:3000") == 0, "server 1 addr %s", buf);
	is_int(b->servers[1].addr.len, sizeof(struct sockaddr_in6),
	    "server 1 len");
	is_int(b->servers[1].weight, 1, "server 1 default weight");
	is_int(b->servers[1].maxconn, 0, "server 1 default maxconn");
	ok(b->servers[1].backup, "server 1 backup");
	is_int(b->servers[2].weight, 0, "server 2 weight 0");
	ok(strcmp(b->servers[2].name, "s3") == 0, "server 2 name (tab)");
	is_int(b->timeout_connect_ms, 500, "timeout_connect");
	is_int(b->timeout_server_ms, 120000, "timeout_server");
	is_int(b->timeout_queue_ms, 500, "timeout_queue = timeout_connect");
	is_int(b->retries, 0, "retries");
	is_int(b->check, CHECK_HTTP, "check http");
	ok(strcmp(b->check_http_method, "GET") == 0, "check method");
	ok(strcmp(b->check_http_path, "/health?full=1") == 0, "check path");
	ok(strcmp(b->check_http_host, "app.example") == 0, "check host");
	is_int(b->check_port, 8081, "check_port");
	is_int(b->check_interval_ms, 250, "check_interval");
	is_int(b->check_timeout_ms, 100, "check_timeout");
	is_int(b->rise, 1, "rise");
	is_int(b->fall, 5, "fall");
	ok(b->discovery, "discovery");
	is_int(b->max_discovered, 10, "max_discovered");

	b = &c->backends[1];
	ok(strcmp(b->name, "other") == 0, "backend name other");
	is_int(b->nservers, 0, "no static servers with discovery");
	ok(b->servers == NULL, "no server array");
	is_int(b->balance, BALANCE_ROUNDROBIN, "default balance");
	is_int(b->timeout_connect_ms, 2000, "default timeout_connect");
	is_int(b->timeout_server_ms, 60000, "default timeout_server");
	is_int(b->timeout_queue_ms, 0, "timeout_queue 0s");
	is_int(b->retries, 2, "default retries");
	is_int(b->check, CHECK_SEND_EXPECT, "check send-expect");
	ok(strcmp(b->check_http_method, "HEAD") == 0, "default method");
	ok(strcmp(b->check_http_path, "/") == 0, "default path");
	ok(b->check_http_host[0] == '\0', "default host empty");
	is_int(b->check_send_len, 6, "check_send length");
	ok(memcmp(b->check_send, "PING\r\n", 7) == 0, "check_send decoded");
	is_int(b->check_expect_len, 7, "check_expect length");
	ok(memcmp(b->check_expect, "+PONG\r\n", 8) == 0,
	    "check_expect decoded");
	is_int(b->check_port, 0, "default check_port");
	is_int(b->check_interval_ms, 2000, "default check_interval");
	is_int(b->check_timeout_ms, 1000, "default check_timeout");
	is_int(b->rise, 2, "default rise");
	is_int(b->fall, 3, "default fall");
	is_int(b->max_discovered, 64, "default max_discovered");

	b = &c->backends[2];
	is_int(b->check, CHECK_TLS, "check tls");
	ok(strcmp(b->check_sni, "db.internal") == 0, "check_sni");
	ok(strcmp(b->check_ca_file, "/etc/shoal/ca file.pem") == 0,
	    "check_ca_file with a space");
	is_int(b->check_send_len, 0, "empty check_send");
	ok(!b->discovery, "default discovery off");
	is_int(b->timeout_queue_ms, 2000, "default timeout_queue");

	is_int(c->frontends[1].timeout_client_ms, 60000,
	    "default timeout_client");
	is_int(c->frontends[1].maxconn, 0, "default frontend maxconn");

	ok(conf_backend_find(c, "other") == &c->backends[1], "backend_find");
	ok(conf_backend_find(c, "nope") == NULL, "backend_find missing");
	conf_free(c);
}

static void
test_defaults(void)
{
	struct conf	*c;
	char		 err[CONF_ERR_MAX];

	c = conf_load_string("(default)", conf_default_text, err);
	ok(c != NULL, "default text loads%s%s", c ? "" : ": ", c ? "" : err);
	if (c != NULL) {
		is_int(c->global.threads, 0, "default threads auto");
		is_int(c->global.log_level, LOG_LVL_INFO, "default log_level");
		is_int(c->nfrontends, 1, "default: one frontend");
		is_int(c->frontends[0].nbinds, 1, "default: one bind");
		is_int(c->nbackends, 1, "default: one backend");
		is_int(c->backends[0].nservers, 0,
		    "default: no static server (they announce themselves)");
		is_int(c->backends[0].check, CHECK_TCP, "default: check tcp");
		is_int(c->backends[0].check_interval_ms, 1000,
		    "default: check_interval 1s");
		ok(c->frontends[0].backend == &c->backends[0],
		    "default: backend resolved");
		conf_free(c);
	}

	/* No [global] at all: its defaults. */
	c = conf_load_string("t.ini", FE BE, err);
	ok(c != NULL, "minimal config loads%s%s", c ? "" : ": ", c ? "" : err);
	if (c != NULL) {
		is_int(c->global.threads, 0, "threads default auto");
		is_int(c->global.maxconn, 10000, "maxconn default");
		is_int(c->global.grace_ms, 30000, "grace default");
		is_int(c->global.log_level, LOG_LVL_INFO, "log_level default");
		is_int(c->global.io_collect_us, 0, "io_collect default 0");
		ok(c->global.splice, "splice default yes");
		conf_free(c);
	}
	c = conf_load_string("t.ini", "[global]\nio_collect = 250us\n"
	    "splice = no\n" FE BE, err);
	ok(c != NULL && c->global.io_collect_us == 250 && !c->global.splice,
	    "io_collect = 250us, splice = no");
	conf_free(c);
	c = conf_load_string("t.ini", "[global]\nio_collect = 2ms\n" FE BE,
	    err);
	ok(c != NULL && c->global.io_collect_us == 2000, "io_collect = 2ms");
	conf_free(c);
	c = conf_load_string("t.ini", "[global]\nio_collect = 0us\n" FE BE,
	    err);
	ok(c != NULL && c->global.io_collect_us == 0, "io_collect = 0us");
	conf_free(c);
	c = conf_load_string("t.ini", "[global]\nthreads = auto\n" FE BE, err);
	ok(c != NULL && c->global.threads == 0, "threads = auto");
	conf_free(c);
	{
		/* In a child, so that a crash is a failed test, not a lost
		 * run. A cleanup helper keeps errno. */
		pid_t	pid = fork();
		int	st = -1;
		bool	reaped;

		if (pid == 0) {
			errno = EAGAIN;
			conf_free(NULL);
			_exit(errno == EAGAIN ? 0 : 3);
		}
		reaped = pid > 0 && waitpid(pid, &st, 0) == pid;
		ok(reaped && WIFEXITED(st) &&
		    WEXITSTATUS(st) == 0,
		    "conf_free(NULL) returns and leaves errno alone (status %d)",
		    st);
	}
}

static const struct {
	const char	*text;
	const char	*want;
} bad[] = {
	/* structure */
	{ "", "t.ini: no frontend defined" },
	{ "; nothing\n\n# here\n", "t.ini: no frontend defined" },
	{ BE, "t.ini: no frontend defined" },
	{ "[global]\nfoo = 1\n", "t.ini:2: unknown key 'foo' in [global]" },
	{ BE "bogus = 1\n", "t.ini:3: unknown key 'bogus' in [backend app]" },
	{ FE "Bind = 127.0.0.1:81\n",
	  "t.ini:4: unknown key 'Bind' in [frontend web]" },
	{ "[foo]\n", "t.ini:1: unknown section [foo]" },
	{ "[Global]\n", "t.ini:1: unknown section [Global]" },
	{ "[listen web]\nbind = 127.0.0.1:80\n",
	  "t.ini:1: unknown section [listen web]" },
	{ "[global]\nmaxconn = 1\nmaxconn = 2\n",
	  "t.ini:3: duplicate key 'maxconn' (first set at line 2)" },
	{ FE "backend = app\n",
	  "t.ini:4: duplicate key 'backend' (first set at line 3)" },
	{ FE BE "[backend app]\n",
	  "t.ini:6: duplicate section [backend app] (first at line 4)" },
	{ "[global]\n[global]\n",
	  "t.ini:2: duplicate section [global] (first at line 1)" },
	{ "[frontend]\n",
	  "t.ini:1: section [frontend] needs a name: [frontend NAME]" },
	{ "[global x]\n", "t.ini:1: section [global] takes no name" },
	{ "[backend a/b]\n", "t.ini:1: bad backend name 'a/b': expected "
	  "1-63 characters from A-Z a-z 0-9 . _ -" },
	{ "[frontend aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	  "aaaaaaaaaaaaaaaaaaaaaaaa]\n",
	  "t.ini:1: bad frontend name 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	  "aaaaaaaaaaaaaaaaaaaaaaaa': expected 1-63 characters from "
	  "A-Z a-z 0-9 . _ -" },
	{ "[global\n",
	  "t.ini:1: syntax error: missing ']' in section header" },
	{ "[global] x\n",
	  "t.ini:1: syntax error: text after ']' in section header" },
	{ "[global]\nthreads\n",
	  "t.ini:2: syntax error: expected 'key = value' or '[section]'" },
	{ "[global]\nthreads: 4\n",
	  "t.ini:2: syntax error: expected 'key = value' or '[section]'" },
	{ BE "server s2 127.0.0.1:82\n",
	  "t.ini:3: syntax error: expected 'key = value' or '[section]'" },
	{ "[global]\n= 4\n",
	  "t.ini:2: syntax error: expected 'key = value' or '[section]'" },
	{ "threads = 4\n", "t.ini:1: key 'threads' outside of any section" },
	{ "[global]\nmaxconn =\n", "t.ini:2: missing value for 'maxconn'" },

	/* cross-section */
	{ "[frontend web]\nbind = 127.0.0.1:80\nbackend = nope\n" BE,
	  "t.ini:3: backend 'nope' is not defined (no [backend nope])" },
	{ FE "[backend app]\nbalance = random\n",
	  "t.ini:4: backend app has no servers, no resolve and discovery is off" },
	{ FE "[backend app]\n",
	  "t.ini:4: backend app has no servers, no resolve and discovery is off" },
	{ "[frontend web]\nbackend = app\n" BE,
	  "t.ini:1: missing key 'bind' in [frontend web]" },
	{ "[frontend web]\nbind = 127.0.0.1:80\n" BE,
	  "t.ini:1: missing key 'backend' in [frontend web]" },
	{ FE BE "check = send-expect\ncheck_send = x\n",
	  "t.ini:6: check = send-expect needs a non-empty check_expect" },
	{ FE BE "check = send-expect\ncheck_expect =\n",
	  "t.ini:6: check = send-expect needs a non-empty check_expect" },
	{ FE "[frontend b]\nbind = 127.0.0.1:80\n",
	  "t.ini:5: duplicate bind address '127.0.0.1:80' (first at line 2)" },

	/* numbers */
	{ "[backend app]\ncheck_port = 70000\n",
	  "t.ini:2: check_port 70000 out of range 1-65535" },
	{ "[global]\nthreads = 0\n",
	  "t.ini:2: threads 0 out of range 1-256 (or auto)" },
	{ "[global]\nthreads = 257\n",
	  "t.ini:2: threads 257 out of range 1-256 (or auto)" },
	{ "[global]\nthreads = many\n",
	  "t.ini:2: bad threads 'many': expected auto or a number 1-256" },
	{ "[global]\nmaxconn = 0\n",
	  "t.ini:2: maxconn 0 out of range 1-1000000" },
	{ "[backend app]\nretries = 17\n",
	  "t.ini:2: retries 17 out of range 0-16" },
	{ "[backend app]\nretries = -1\n",
	  "t.ini:2: retries -1 out of range 0-16" },
	{ "[backend app]\nretries = +1\n",
	  "t.ini:2: bad integer '+1' for retries: expected a decimal number" },
	{ "[backend app]\nretries = 0x2\n",
	  "t.ini:2: bad integer '0x2' for retries: expected a decimal number" },
	{ "[backend app]\nrise = 99999999999999999999999\n",
	  "t.ini:2: rise 99999999999999999999999 out of range 1-100" },

	/* durations */
	{ "[backend app]\ntimeout_connect = -1\n", "t.ini:2: bad duration "
	  "'-1': expected a number with a unit ms, s, m or h" },
	{ "[backend app]\ntimeout_server = 5x\n", "t.ini:2: bad duration "
	  "'5x': expected a number with a unit ms, s, m or h" },
	{ "[frontend web]\ntimeout_client = 5\n", "t.ini:2: bad duration "
	  "'5': expected a number with a unit ms, s, m or h" },
	{ "[global]\nio_collect = 300\n", "t.ini:2: bad duration "
	  "'300': expected a number with a unit us, ms or s" },
	{ "[global]\nio_collect = 1m\n", "t.ini:2: bad duration "
	  "'1m': expected a number with a unit us, ms or s" },
	{ "[global]\nio_collect = us\n", "t.ini:2: bad duration "
	  "'us': expected a number with a unit us, ms or s" },
	{ "[global]\nio_collect = 101ms\n",
	  "t.ini:2: io_collect 101ms out of range 0us-100000us" },
	{ "[global]\nio_collect = 1s\n",
	  "t.ini:2: io_collect 1s out of range 0us-100000us" },
	{ "[global]\nio_collect = 99999999999999999999us\n",
	  "t.ini:2: io_collect 99999999999999999999us out of range "
	  "0us-100000us" },
	{ "[global]\nsplice = maybe\n", "t.ini:2: bad boolean 'maybe' for "
	  "splice: expected yes, no, true, false, on, off, 1 or 0" },
	{ "[global]\ngrace = 1.5s\n", "t.ini:2: bad duration "
	  "'1.5s': expected a number with a unit ms, s, m or h" },
	{ "[global]\ngrace = 25h\n", "t.ini:2: grace 25h out of range 0s-24h" },
	{ "[global]\ngrace = 99999999999999999999ms\n",
	  "t.ini:2: grace 99999999999999999999ms out of range 0s-24h" },
	{ "[backend app]\ncheck_interval = 5ms\n",
	  "t.ini:2: check_interval 5ms out of range 10ms-24h" },
	{ "[backend app]\ntimeout_connect = 0s\n",
	  "t.ini:2: timeout_connect 0s out of range 1ms-24h" },

	/* addresses */
	{ "[frontend web]\nbind = 1.2.3.4:70000\n", "t.ini:2: bad address "
	  "'1.2.3.4:70000': port out of range 1-65535" },
	{ "[frontend web]\nbind = ::1:8080\n", "t.ini:2: bad address "
	  "'::1:8080': IPv6 addresses need brackets, e.g. [::1]:80" },
	{ "[frontend web]\nbind = localhost:80\n", "t.ini:2: bad address "
	  "'localhost:80': numeric address required (no host names)" },
	{ "[frontend web]\nbind = 1.2.3.4\n",
	  "t.ini:2: bad address '1.2.3.4': missing ':PORT'" },
	{ "[frontend web]\nbind = [ff02::1]:80\n", "t.ini:2: bad address "
	  "'[ff02::1]:80': multicast address not allowed" },
	{ "[backend app]\nserver = s1 localhost:80\n", "t.ini:2: bad server "
	  "address 'localhost:80': numeric address required (no host names)" },
	{ "[backend app]\nserver = s1 0.0.0.0:80\n", "t.ini:2: bad server "
	  "address '0.0.0.0:80': unspecified address not allowed" },
	{ "[backend app]\nserver = s1 [::]:80\n", "t.ini:2: bad server "
	  "address '[::]:80': unspecified address not allowed" },
	{ "[backend app]\nserver = s1 239.1.2.3:80\n", "t.ini:2: bad server "
	  "address '239.1.2.3:80': multicast address not allowed" },

	/* server lines */
	{ "[backend app]\nserver = s1 127.0.0.1:80 weight=300\n",
	  "t.ini:2: weight 300 out of range 0-256" },
	{ "[backend app]\nserver = s1 127.0.0.1:80 weight=x\n",
	  "t.ini:2: bad weight 'x': expected a decimal number" },
	{ "[backend app]\nserver = s1 127.0.0.1:80 maxconn=-1\n",
	  "t.ini:2: maxconn -1 out of range 0-1000000" },
	{ "[backend app]\nserver = s1 127.0.0.1:80 weight\n",
	  "t.ini:2: server option 'weight' needs a value: weight=N" },
	{ "[backend app]\nserver = s1 127.0.0.1:80 fast\n",
	  "t.ini:2: unknown server option 'fast' (expected weight=N, "
	  "maxconn=N, backup, init_state=STATE or send_proxy=none|v1|v2)" },
	{ "[backend app]\nserver = s1 127.0.0.1:80 send_proxy=v3\n",
	  "t.ini:2: bad server option 'send_proxy=v3': expected "
	  "send_proxy=none, v1 or v2" },
	{ "[backend app]\nserver = s1 127.0.0.1:80 send_proxy=v1 "
	  "send_proxy=v2\n", "t.ini:2: server option 'send_proxy' given twice" },
	{ "[backend app]\nserver = s1 127.0.0.1:80 weight=1 weight=2\n",
	  "t.ini:2: server option 'weight' given twice" },
	{ "[backend app]\nserver = s1 127.0.0.1:80 backup backup\n",
	  "t.ini:2: server option 'backup' given twice" },
	{ "[backend app]\nserver = s1 127.0.0.1:80 backup=1\n",
	  "t.ini:2: server option 'backup' takes no value" },
	{ "[backend app]\nserver = s1 127.0.0.1:80\nserver = s1 127.0.0.1:81\n",
	  "t.ini:3: duplicate server name 's1' (first at line 2)" },
	{ "[backend app]\nserver = s1\n", "t.ini:2: bad server 's1': expected "
	  "'NAME ADDR:PORT [weight=N] [maxconn=N] [backup] "
	  "[init_state=up|checking|down] [send_proxy=none|v1|v2]'" },
	{ "[backend app]\nserver = s/1 127.0.0.1:80\n", "t.ini:2: bad server "
	  "name 's/1': expected 1-63 characters from A-Z a-z 0-9 . _ -" },

	/* enums, booleans, strings */
	{ "[backend app]\nbalance = fastest\n", "t.ini:2: bad balance "
	  "'fastest': expected roundrobin, leastconn, source, random or first" },
	{ "[backend app]\ncheck = ping\n", "t.ini:2: bad check 'ping': "
	  "expected none, tcp, http, tls or send-expect" },
	{ "[global]\nlog_level = verbose\n", "t.ini:2: bad log_level "
	  "'verbose': expected error, warn, info or debug" },
	{ "[backend app]\ndiscovery = maybe\n", "t.ini:2: bad boolean "
	  "'maybe' for discovery: expected yes, no, true, false, on, off, "
	  "1 or 0" },
	{ "[frontend web]\nbackend = a b\n", "t.ini:2: bad backend 'a b': "
	  "expected a name of 1-63 characters from A-Z a-z 0-9 . _ -" },
	{ "[backend app]\ncheck_http = POST /\n", "t.ini:2: bad check_http "
	  "method 'POST': expected GET, HEAD or OPTIONS" },
	{ "[backend app]\ncheck_http = GET health\n", "t.ini:2: bad "
	  "check_http path 'health': must start with '/'" },
	{ "[backend app]\ncheck_http = GET / x\n", "t.ini:2: bad check_http "
	  "'GET / x': expected 'METHOD PATH', e.g. 'HEAD /'" },
	{ "[backend app]\ncheck_host = a b\n",
	  "t.ini:2: bad check_host 'a b': must not contain spaces" },
	{ "[backend app]\ncheck_send = \\q\n", "t.ini:2: bad check_send: "
	  "unknown escape '\\q' (use \\r \\n \\t \\\\ or \\xHH)" },
	{ "[backend app]\ncheck_expect = \\x4\n",
	  "t.ini:2: bad check_expect: \\x needs two hex digits" },
};

static void
test_bad(void)
{
	struct conf	*c;
	char		 err[CONF_ERR_MAX];
	size_t		 i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		strcpy(err, "(unset)");
		c = conf_load_string("t.ini", bad[i].text, err);
		ok(c == NULL && strcmp(err, bad[i].want) == 0, "bad %zu: %s",
		    i, bad[i].want);
		if (c != NULL || strcmp(err, bad[i].want) != 0)
			printf("#   got: %s\n", c != NULL ? "(loaded)" : err);
		conf_free(c);
	}
}

static void
test_long_line(void)
{
	struct conf	*c;
	static char	 text[4096];
	char		 err[CONF_ERR_MAX];
	size_t		 n;

	strcpy(text, "[global]\n; ");
	n = strlen(text);
	memset(text + n, 'x', 2000);
	strcpy(text + n + 2000, "\n");
	c = conf_load_string("t.ini", text, err);
	ok(c == NULL && strcmp(err, "t.ini:2: line too long "
	    "(max 1022 characters)") == 0, "line too long: %s", err);
	conf_free(c);

	/* 1022 characters is fine. */
	snprintf(text, 4096, "%s%s", FE, BE);
	n = strlen(text);
	memcpy(text + n, "; ", 2);
	memset(text + n + 2, 'y', 1020);
	strcpy(text + n + 1022, "\n");
	c = conf_load_string("t.ini", text, err);
	ok(c != NULL, "a 1022 character line loads%s%s", c ? "" : ": ",
	    c ? "" : err);
	conf_free(c);
}

static void
test_files(void)
{
	struct conf	*c;
	char		 err[CONF_ERR_MAX], path[] = "/tmp/test_conf.XXXXXX";
	char		 want[CONF_ERR_MAX + 64];
	FILE		*f;
	int		 fd;

	c = conf_load_file("/nonexistent/shoal.ini", err);
	ok(c == NULL && strcmp(err, "/nonexistent/shoal.ini: cannot read: "
	    "No such file or directory") == 0, "missing file: %s", err);
	c = conf_load_file("/", err);
	ok(c == NULL && strcmp(err, "/: cannot read: not a regular file "
	    "(a directory)") == 0, "directory: %s", err);
	c = conf_load_file("/dev/null", err);
	ok(c == NULL && strcmp(err, "/dev/null: cannot read: not a regular "
	    "file") == 0, "device: %s", err);

	if ((fd = mkstemp(path)) == -1 || (f = fdopen(fd, "w")) == NULL) {
		ok(0, "mkstemp");
		return;
	}
	fputs("\xEF\xBB\xBF" FE BE, f);		/* with a UTF-8 BOM */
	fclose(f);
	c = conf_load_file(path, err);
	ok(c != NULL, "file loads%s%s", c ? "" : ": ", c ? "" : err);
	ok(c != NULL && strcmp(c->file, path) == 0, "file name is the path");
	conf_free(c);

	f = fopen(path, "w");
	fputs("[global]\nthreads = 2\n", f);
	fputc('\0', f);
	fputs("\n", f);
	fclose(f);
	c = conf_load_file(path, err);
	snprintf(want, sizeof(want), "%s:3: NUL byte in file", path);
	ok(c == NULL && strcmp(err, want) == 0, "NUL byte: %s", err);

	f = fopen(path, "w");
	fputs(FE "[backend app]\nserver = s1 127.0.0.1:80 weight=9999\n", f);
	fclose(f);
	c = conf_load_file(path, err);
	snprintf(want, sizeof(want), "%s:5: weight 9999 out of range 0-256",
	    path);
	ok(c == NULL && strcmp(err, want) == 0, "error names the path: %s",
	    err);
	unlink(path);
}

static void
test_parsers(void)
{
	struct conf_addr	 a;
	const struct sockaddr_in	*sin = (const void *)&a.ss;
	const struct sockaddr_in6	*sin6 = (const void *)&a.ss;
	const char		*why;
	uint32_t		 ms;
	long			 v;
	bool			 bv;
	char			 buf[128];
	size_t			 i;
	static const struct {
		const char	*s;
		uint32_t	 ms;
	} durs[] = {
		{ "500ms", 500 }, { "2s", 2000 }, { "1m", 60000 },
		{ "1h", 3600000 }, { "0s", 0 }, { "24h", 86400000 },
		{ "86400000ms", 86400000 }, { "007s", 7000 },
	};
	static const char *const baddurs[] = {
		"", "5", "5x", "-1", "1.5s", "s", "5 s", "5S", "1d", "+5s",
		"25h", "86400001ms", "99999999999999999999999h",
	};
	static const char *const badaddrs[] = {
		"", "1.2.3.4", "1.2.3.4:", "1.2.3.4:0", "1.2.3.4:65536",
		"1.2.3.4:+80", "1.2.3.4:80x", "1.2.3:80", "::1:8080",
		"localhost:80", "[::1]80", "[::1:80", "[1.2.3.4]:80",
		"[::1]:", ":80", "[]:80", "[fe80::1%eth0]:80", " 1.2.3.4:80",
	};

	for (i = 0; i < sizeof(durs) / sizeof(durs[0]); i++) {
		ms = 12345;
		ok(conf_parse_duration(durs[i].s, &ms, &why) == 0 &&
		    ms == durs[i].ms, "duration %s = %u", durs[i].s, ms);
	}
	for (i = 0; i < sizeof(baddurs) / sizeof(baddurs[0]); i++) {
		why = NULL;
		ok(conf_parse_duration(baddurs[i], &ms, &why) == -1 &&
		    why != NULL, "duration '%s' rejected: %s", baddurs[i],
		    why ? why : "?");
	}
	conf_parse_duration("25h", &ms, &why);
	ok(strcmp(why, "must be at most 24h") == 0, "25h: %s", why);
	conf_parse_duration("5x", &ms, &why);
	ok(strcmp(why, "expected a number with a unit ms, s, m or h") == 0,
	    "5x: %s", why);

	ok(conf_parse_addr("1.2.3.4:80", &a, &why) == 0, "addr 1.2.3.4:80");
	is_int(a.ss.ss_family, AF_INET, "AF_INET");
	is_int(a.len, sizeof(struct sockaddr_in), "sockaddr_in len");
	is_int(ntohs(sin->sin_port), 80, "port 80");
	is_int(ntohl(sin->sin_addr.s_addr), 0x01020304, "1.2.3.4");
	ok(conf_parse_addr("[::1]:80", &a, &why) == 0, "addr [::1]:80");
	is_int(a.ss.ss_family, AF_INET6, "AF_INET6");
	is_int(a.len, sizeof(struct sockaddr_in6), "sockaddr_in6 len");
	ok(IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr), "::1");
	is_int(ntohs(sin6->sin6_port), 80, "v6 port 80");
	ok(conf_parse_addr("[2001:db8::1]:443", &a, &why) == 0 &&
	    strcmp(addr_str(&a, buf, sizeof(buf)), "[2001:db8::1]:443") == 0,
	    "addr [2001:db8::1]:443");
	ok(conf_parse_addr("0.0.0.0:65535", &a, &why) == 0 &&
	    strcmp(addr_str(&a, buf, sizeof(buf)), "0.0.0.0:65535") == 0,
	    "addr 0.0.0.0:65535");
	ok(conf_check_server_addr(&a, &why) == -1 &&
	    strcmp(why, "unspecified address not allowed") == 0,
	    "0.0.0.0 not a server address");
	ok(conf_parse_addr("[::]:1", &a, &why) == 0 &&
	    conf_check_server_addr(&a, &why) == -1,
	    "[::] not a server address");
	ok(conf_parse_addr("224.0.0.1:1", &a, &why) == 0 &&
	    conf_check_server_addr(&a, &why) == -1 &&
	    strcmp(why, "multicast address not allowed") == 0,
	    "multicast not a server address");
	ok(conf_parse_addr("10.1.2.3:8080", &a, &why) == 0 &&
	    conf_check_server_addr(&a, &why) == 0,
	    "10.1.2.3 is a server address");
	for (i = 0; i < sizeof(badaddrs) / sizeof(badaddrs[0]); i++) {
		why = NULL;
		ok(conf_parse_addr(badaddrs[i], &a, &why) == -1 && why != NULL,
		    "addr '%s' rejected: %s", badaddrs[i], why ? why : "?");
	}
	conf_parse_addr("::1:8080", &a, &why);
	ok(strstr(why, "brackets") != NULL, "::1:8080 suggests brackets");
	conf_parse_addr("localhost:80", &a, &why);
	ok(strstr(why, "numeric address required") != NULL,
	    "localhost: numeric address required");
	conf_parse_addr("1.2.3.4:70000", &a, &why);
	ok(strcmp(why, "port out of range 1-65535") == 0, "port 70000: %s",
	    why);

	ok(conf_parse_int("42", 0, 100, &v, &why) == 0 && v == 42, "int 42");
	ok(conf_parse_int("0", 0, 100, &v, &why) == 0 && v == 0, "int 0");
	ok(conf_parse_int("100", 0, 100, &v, &why) == 0 && v == 100,
	    "int max");
	ok(conf_parse_int("-5", -10, 10, &v, &why) == 0 && v == -5,
	    "int -5 when min < 0");
	ok(conf_parse_int("-5", 0, 10, &v, &why) == -1 &&
	    strcmp(why, "out of range") == 0, "int -5 when min = 0");
	ok(conf_parse_int("101", 0, 100, &v, &why) == -1 &&
	    strcmp(why, "out of range") == 0, "int 101 out of range");
	ok(conf_parse_int("99999999999999999999999", 0, 100, &v, &why) == -1 &&
	    strcmp(why, "out of range") == 0, "int overflow");
	ok(conf_parse_int("1x", 0, 100, &v, &why) == -1 &&
	    strcmp(why, "expected a decimal number") == 0, "int 1x");
	ok(conf_parse_int("", 0, 100, &v, &why) == -1, "int empty");
	ok(conf_parse_int(" 1", 0, 100, &v, &why) == -1, "int leading blank");
	ok(conf_parse_int("+1", 0, 100, &v, &why) == -1, "int plus sign");
	ok(conf_parse_int("0x10", 0, 100, &v, &why) == -1, "int hex");

	ok(conf_parse_bool("yes", &bv, &why) == 0 && bv, "bool yes");
	ok(conf_parse_bool("on", &bv, &why) == 0 && bv, "bool on");
	ok(conf_parse_bool("1", &bv, &why) == 0 && bv, "bool 1");
	ok(conf_parse_bool("true", &bv, &why) == 0 && bv, "bool true");
	ok(conf_parse_bool("no", &bv, &why) == 0 && !bv, "bool no");
	ok(conf_parse_bool("off", &bv, &why) == 0 && !bv, "bool off");
	ok(conf_parse_bool("0", &bv, &why) == 0 && !bv, "bool 0");
	ok(conf_parse_bool("false", &bv, &why) == 0 && !bv, "bool false");
	ok(conf_parse_bool("maybe", &bv, &why) == -1, "bool maybe");
	ok(conf_parse_bool("", &bv, &why) == -1, "bool empty");

	ok(strcmp(conf_balance_name(BALANCE_SOURCE), "source") == 0,
	    "balance name");
	ok(strcmp(conf_check_name(CHECK_SEND_EXPECT), "send-expect") == 0,
	    "check name");
	ok(strcmp(conf_log_level_name(LOG_LVL_WARN), "warn") == 0,
	    "log level name");
	ok(strcmp(conf_balance_name((enum conf_balance)99), "?") == 0,
	    "unknown balance name");
}

/* [discovery] (appended with discovery/). */
#define DISC	"[discovery]\nallow = 127.0.0.0/8\n"

static const struct {
	const char	*text;
	const char	*want;
} bad_discovery[] = {
	{ FE BE "[discovery]\n", "t.ini:6: [discovery] needs at least one "
	  "'allow = ADDRESS/PREFIX': announced addresses must fall inside" },
	{ FE BE DISC "[discovery]\n",
	  "t.ini:8: duplicate section [discovery] (first at line 6)" },
	{ FE BE "[discovery x]\n", "t.ini:6: section [discovery] takes no name" },
	{ FE BE DISC "group = 10.0.0.1\n", "t.ini:8: bad group '10.0.0.1': "
	  "not a multicast address (224.0.0.0/4 or ff00::/8)" },
	{ FE BE DISC "group = 239.1.1.1:7466\n", "t.ini:8: bad group "
	  "'239.1.1.1:7466': expected a numeric multicast address without "
	  "port, e.g. 239.255.76.66 or ff12::4c42:4431" },
	{ FE BE DISC "group = shoal.local\n", "t.ini:8: bad group "
	  "'shoal.local': expected a numeric multicast address without port, "
	  "e.g. 239.255.76.66 or ff12::4c42:4431" },
	{ FE BE DISC "port = 0\n", "t.ini:8: port 0 out of range 1-65535" },
	{ FE BE DISC "port = 70000\n",
	  "t.ini:8: port 70000 out of range 1-65535" },
	{ FE BE DISC "allow = 10.0.0.1/8\n", "t.ini:8: bad allow "
	  "'10.0.0.1/8': host bits set after /8" },
	{ FE BE DISC "allow = 10.0.0.0/33\n", "t.ini:8: bad allow "
	  "'10.0.0.0/33': prefix length must be 0-32" },
	{ FE BE DISC "allow = fd00::1/64\n", "t.ini:8: bad allow "
	  "'fd00::1/64': host bits set after /64" },
	{ FE BE DISC "allow = [fd00::]/129\n", "t.ini:8: bad allow "
	  "'[fd00::]/129': prefix length must be 0-128" },
	{ FE BE DISC "allow = 10.0.0.0/\n", "t.ini:8: bad allow "
	  "'10.0.0.0/': prefix length must be 0-32" },
	{ FE BE DISC "allow = lab-net/24\n", "t.ini:8: bad allow "
	  "'lab-net/24': expected ADDRESS/PREFIX, e.g. 192.168.42.0/24 or "
	  "fd00::/64" },
	{ FE BE DISC "auth = hmac\n", "t.ini:8: bad auth 'hmac': expected "
	  "hmac-sha256 or none" },
	{ FE BE DISC "max_skew = 50ms\n",
	  "t.ini:8: max_skew 50ms out of range 100ms-24h" },
	{ FE BE DISC "interface = averyveryverylongname\n",
	  "t.ini:8: interface name too long (max 15 characters)" },
	{ FE BE DISC "interface = eth 0\n",
	  "t.ini:8: bad interface 'eth 0': must not contain spaces" },
	{ FE BE DISC "require_source_match = maybe\n", "t.ini:8: bad boolean "
	  "'maybe' for require_source_match: expected yes, no, true, false, "
	  "on, off, 1 or 0" },
	{ FE BE DISC "ttl = 1s\n", "t.ini:8: unknown key 'ttl' in "
	  "[discovery]" },
	{ FE BE DISC "realm = a\n" "realm = b\n",
	  "t.ini:9: duplicate key 'realm' (first set at line 8)" },
};

static void
test_discovery(void)
{
	static const char full[] =
	    FE "[backend app]\ndiscovery = yes\n"
	    "[discovery]\n"				/* 6 */
	    "group = ff12::4c42:4431\n"
	    "port = 7467\n"
	    "interface = eth0\n"
	    "realm = ait-lab4\n"			/* 10 */
	    "key_file = /etc/shoal/discovery.key\n"
	    "auth = none\n"
	    "allow = 192.168.42.0/24\n"
	    "allow = [fd00::]/64\n"
	    "allow = 10.1.2.3\n"			/* 15 */
	    "allow = 0.0.0.0/0\n"
	    "max_skew = 5s\n"
	    "require_source_match = no\n";
	const struct sockaddr_in6	*g6;
	const struct sockaddr_in	*g4;
	struct conf			*c;
	char				 err[CONF_ERR_MAX], buf[64];
	size_t				 i;

	c = conf_load_string("t.ini", full, err);
	ok(c != NULL, "[discovery] loads%s%s", c ? "" : ": ", c ? "" : err);
	if (c != NULL) {
		const struct conf_discovery *d = &c->discovery;

		g6 = (const void *)&d->group.ss;
		inet_ntop(AF_INET6, &g6->sin6_addr, buf, sizeof(buf));
		ok(d->enabled && d->line == 6, "discovery enabled, line 6");
		ok(d->group.ss.ss_family == AF_INET6 &&
		    strcmp(buf, "ff12::4c42:4431") == 0 &&
		    ntohs(g6->sin6_port) == 7467 &&
		    d->group.len == sizeof(*g6), "IPv6 group, port 7467");
		is_int(d->port, 7467, "port");
		ok(strcmp(d->interface, "eth0") == 0, "interface");
		ok(strcmp(d->realm, "ait-lab4") == 0, "realm");
		ok(strcmp(d->key_file, "/etc/shoal/discovery.key") == 0,
		    "key_file");
		ok(d->auth_none, "auth = none");
		is_int(d->nallow, 4, "four allow lines");
		ok(d->allow[0].ss.ss_family == AF_INET &&
		    d->allow[0].prefix == 24 && d->allow[0].line == 13,
		    "allow 192.168.42.0/24");
		ok(d->allow[1].ss.ss_family == AF_INET6 &&
		    d->allow[1].prefix == 64, "allow [fd00::]/64");
		ok(d->allow[2].prefix == 32, "a bare address is a /32");
		ok(d->allow[3].prefix == 0, "allow 0.0.0.0/0");
		is_int(d->max_skew_ms, 5000, "max_skew");
		ok(!d->require_source_match, "require_source_match = no");
		conf_free(c);
	}

	c = conf_load_string("t.ini", FE "[backend app]\ndiscovery = yes\n"
	    DISC, err);
	ok(c != NULL, "minimal [discovery] loads%s%s", c ? "" : ": ",
	    c ? "" : err);
	if (c != NULL) {
		const struct conf_discovery *d = &c->discovery;

		g4 = (const void *)&d->group.ss;
		ok(d->enabled && d->group.ss.ss_family == AF_INET &&
		    ntohl(g4->sin_addr.s_addr) == 0xefff4c42 &&
		    ntohs(g4->sin_port) == 7466, "default group "
		    "239.255.76.66:7466");
		ok(strcmp(d->interface, "lo") == 0, "default interface lo");
		ok(strcmp(d->realm, "shoal") == 0, "default realm shoal");
		ok(d->key_file[0] == '\0' && !d->auth_none,
		    "default: no key file, auth not none");
		is_int(d->max_skew_ms, 30000, "default max_skew 30s");
		ok(d->require_source_match, "default require_source_match");
		conf_free(c);
	}

	c = conf_load_string("t.ini", FE BE, err);
	ok(c != NULL && !c->discovery.enabled && c->discovery.nallow == 0,
	    "no [discovery]: disabled");
	conf_free(c);

	/* The rule of backends stays: no servers needs discovery = yes. */
	c = conf_load_string("t.ini", FE "[backend app]\n" DISC, err);
	ok(c == NULL && strcmp(err, "t.ini:4: backend app has no servers, no "
	    "resolve and discovery is off") == 0, "[discovery] alone does not fill a "
	    "backend without discovery = yes: %s", err);
	conf_free(c);

	c = conf_load_string("(default)", conf_default_text, err);
	ok(c != NULL && c->discovery.enabled && c->discovery.auth_none &&
	    c->discovery.nallow == 1 && c->discovery.allow[0].prefix == 8 &&
	    strcmp(c->discovery.interface, "lo") == 0 &&
	    c->backends[0].discovery, "default: discovery on lo, auth none, "
	    "allow 127.0.0.0/8, backend app discovery = yes");
	conf_free(c);

	for (i = 0; i < sizeof(bad_discovery) / sizeof(bad_discovery[0]); i++) {
		strcpy(err, "(unset)");
		c = conf_load_string("t.ini", bad_discovery[i].text, err);
		ok(c == NULL && strcmp(err, bad_discovery[i].want) == 0,
		    "bad discovery %zu: %s", i, bad_discovery[i].want);
		if (c != NULL || strcmp(err, bad_discovery[i].want) != 0)
			printf("#   got: %s\n", c != NULL ? "(loaded)" : err);
		conf_free(c);
	}
}

/* [stats] and [admin]. */
static const struct {
	const char	*text;
	const char	*want;
} bad_ops[] = {
	{ FE BE "[stats]\nrefresh = 2s\n",
	  "t.ini:6: missing key 'bind' in [stats]" },
	{ FE BE "[stats]\nbind = 127.0.0.1:1936\nrefresh = 500ms\n",
	  "t.ini:8: refresh 500ms out of range 1s-24h" },
	{ FE BE "[stats]\nbind = localhost:1936\n",
	  "t.ini:7: bad address 'localhost:1936': numeric address required "
	  "(no host names)" },
	{ FE BE "[stats]\nbind = 127.0.0.1:1936\nport = 1\n",
	  "t.ini:8: unknown key 'port' in [stats]" },
	{ FE BE "[admin]\nsocket = admin.sock\n",
	  "t.ini:7: bad socket 'admin.sock': expected an absolute path" },
	{ FE BE "[admin]\nbind = ::1:9999\n",
	  "t.ini:7: bad address '::1:9999': IPv6 addresses need brackets, "
	  "e.g. [::1]:80" },
	{ FE BE "[admin]\nsocket = /run/a.sock\nsocket = /run/b.sock\n",
	  "t.ini:8: duplicate key 'socket' (first set at line 7)" },
	{ FE BE "[admin]\ntimeout = 50ms\n",
	  "t.ini:7: timeout 50ms out of range 100ms-24h" },
	{ FE BE "[admin]\n[admin]\n",
	  "t.ini:7: duplicate section [admin] (first at line 6)" },
};

static void
test_ops(void)
{
	char		 err[CONF_ERR_MAX];
	struct conf	*c;

	c = conf_load_string("t.ini", FE BE "[stats]\nbind = 0.0.0.0:1936\n"
	    "[admin]\nsocket = /run/shoal/a.sock\nbind = 127.0.0.1:9999\n",
	    err);
	ok(c != NULL && c->stats.enabled && c->stats.refresh_ms == 5000 &&
	    c->admin.enabled && strcmp(c->admin.socket, "/run/shoal/a.sock")
	    == 0 && c->admin.bind.len > 0 && c->admin.timeout_ms == 60000,
	    "[stats] and [admin] load, refresh defaults to 5s, admin "
	    "timeout to 60s");
	conf_free(c);
	c = conf_load_string("t.ini", FE BE "[admin]\ntimeout = 5m\n", err);
	ok(c != NULL && c->admin.timeout_ms == 300000, "[admin] timeout = 5m");
	conf_free(c);
	c = conf_load_string("t.ini", FE BE, err);
	ok(c != NULL && !c->stats.enabled && !c->admin.enabled &&
	    c->admin.bind.len == 0, "no [stats], no [admin]: both off");
	conf_free(c);
	for (size_t i = 0; i < sizeof(bad_ops) / sizeof(bad_ops[0]); i++) {
		strcpy(err, "(unset)");
		c = conf_load_string("t.ini", bad_ops[i].text, err);
		ok(c == NULL && strcmp(err, bad_ops[i].want) == 0,
		    "bad stats/admin %zu: %s", i, bad_ops[i].want);
		if (c != NULL || strcmp(err, bad_ops[i].want) != 0)
			printf("#   got: %s\n", c != NULL ? "(loaded)" : err);
		conf_free(c);
	}
}

/* init_state: backend key (default up) and server option, which defaults
 * to the backend's wherever the backend key stands. */
static void
test_init_state(void)
{
	static const struct {
		const char	*text;
		const char	*want;	/* error substring */
	} bad_is[] = {
		{ FE "[backend app]\ninit_state = maybe\nserver = s1 "
		  "127.0.0.1:81\n", "t.ini:5: bad init_state 'maybe'" },
		{ FE "[backend app]\nserver = s1 127.0.0.1:81 init_state=x\n",
		  "t.ini:5: bad server option 'init_state=x'" },
		{ FE "[backend app]\nserver = s1 127.0.0.1:81 init_state\n",
		  "t.ini:5: bad server option 'init_state'" },
		{ FE "[backend app]\nserver = s1 127.0.0.1:81 init_state=up "
		  "init_state=down\n", "t.ini:5: server option 'init_state' "
		  "given twice" },
	};
	char		 err[CONF_ERR_MAX];
	struct conf	*c;

	c = conf_load_string("t.ini", FE BE, err);
	ok(c != NULL && c->backends[0].init_state == INIT_UP &&
	    c->backends[0].servers[0].init_state == INIT_UP,
	    "init_state defaults to up, for the backend and its servers");
	conf_free(c);
	c = conf_load_string("t.ini", FE "[backend app]\n"
	    "server = s1 127.0.0.1:81\n"
	    "server = s2 127.0.0.1:82 init_state=up\n"
	    "server = s3 127.0.0.1:83 init_state=down\n"
	    "init_state = checking\n", err);
	ok(c != NULL && c->backends[0].init_state == INIT_CHECKING &&
	    c->backends[0].servers[0].init_state == INIT_CHECKING &&
	    c->backends[0].servers[1].init_state == INIT_UP &&
	    c->backends[0].servers[2].init_state == INIT_DOWN,
	    "a server without one takes the backend's, even given after it; "
	    "its own wins%s%s", c ? "" : ": ", c ? "" : err);
	conf_free(c);
	for (size_t i = 0; i < sizeof(bad_is) / sizeof(bad_is[0]); i++) {
		err[0] = '\0';
		c = conf_load_string("t.ini", bad_is[i].text, err);
		ok(c == NULL && strstr(err, bad_is[i].want) != NULL,
		    "refused: %s (got '%s')", bad_is[i].want, err);
		conf_free(c);
	}
}

int
main(void)
{
	test_good();
	test_defaults();
	test_bad();
	test_long_line();
	test_files();
	test_parsers();
	test_discovery();
	test_ops();
	test_init_state();
	return done_testing();
}
