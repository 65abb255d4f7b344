/*
 * test_health.c - the rise/fall machine from scripted result sequences,
 * the HTTP status-line parser, and real checks against loopback peers
 * served from the same private libev loop (fast: 10 ms intervals).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ev.h>

#include "health.h"
#include "log.h"
#include "net.h"
#include "server.h"
#include "t.h"

/* ------------------------------------------------------------------ */
/* The machine. */

/*
 * Feed a script of results ('1' ok, '0' fail) and return the states after
 * each step as a string of 'C', 'U', 'D'; *changes counts transitions.
 */
static void
run_script(int rise, int fall, enum server_health init, const char *script,
    char *states, int *changes)
{
	static const char letter[] = { [HEALTH_CHECKING] = 'C',
	    [HEALTH_UP] = 'U', [HEALTH_DOWN] = 'D' };
	struct health_fsm f;
	size_t i;

	health_fsm_init(&f, rise, fall, init);
	*changes = 0;
	for (i = 0; script[i] != '\0'; i++) {
		enum server_health	before = f.state;
		bool			changed;

		changed = health_fsm_step(&f, script[i] == '1');
		if (changed)
			(*changes)++;
		if (changed != (before != f.state))
			states[i] = '?';	/* return value lies */
		else
			states[i] = letter[f.state];
	}
	states[i] = '\0';
}

static void
script_is(int rise, int fall, enum server_health init, const char *script,
    const char *want, int want_changes, const char *name)
{
	char	got[256];
	int	changes;

	run_script(rise, fall, init, script, got, &changes);
	ok(strcmp(got, want) == 0 && changes == want_changes,
	    "%s: rise %d fall %d \"%s\" -> \"%s\" (want \"%s\"), %d changes",
	    name, rise, fall, script, got, want, changes);
}

static void
test_fsm(void)
{
	struct health_fsm f;

	/* checking -> up after exactly rise successes. */
	script_is(2, 3, HEALTH_CHECKING, "11", "CU", 1, "checking up at rise");
	script_is(3, 3, HEALTH_CHECKING, "111", "CCU", 1, "rise 3");
	script_is(1, 1, HEALTH_CHECKING, "1", "U", 1, "rise 1");
	/* checking -> down after exactly fall failures. */
	script_is(2, 3, HEALTH_CHECKING, "000", "CCD", 1,
	    "checking down at fall");
	/* up -> down after exactly fall failures; a success resets. */
	script_is(2, 3, HEALTH_UP, "000", "UUD", 1, "up down at fall");
	script_is(2, 3, HEALTH_UP, "00100100", "UUUUUUUU", 0,
	    "a success in a failure run resets the count");
	script_is(2, 3, HEALTH_UP, "001000", "UUUUUD", 1,
	    "fall counted again from the success");
	/* down -> up after exactly rise; a failure resets. */
	script_is(2, 3, HEALTH_DOWN, "11", "DU", 1, "down up at rise");
	script_is(3, 2, HEALTH_DOWN, "1101110", "DDDDDUU", 1,
	    "a failure in a success run resets the count");
	/* Down stays down on failures, up stays up on successes. */
	script_is(2, 3, HEALTH_DOWN, "0000000", "DDDDDDD", 0, "down stays");
	script_is(2, 3, HEALTH_UP, "1111111", "UUUUUUU", 0, "up stays");
	/* Flapping never changes state with rise 2 / fall 3. */
	script_is(2, 3, HEALTH_UP, "0101010101010101", "UUUUUUUUUUUUUUUU", 0,
	    "flapping from up");
	script_is(2, 3, HEALTH_DOWN, "1010101010101010", "DDDDDDDDDDDDDDDD", 0,
	    "flapping from down");
	script_is(2, 3, HEALTH_CHECKING, "1010101010", "CCCCCCCCCC", 0,
	    "flapping from checking");
	/* Full cycle: the shortest down -> up -> down is rise + fall. */
	script_is(2, 3, HEALTH_DOWN, "11000110", "DUUUDDUU", 3, "cycle");
	/* Thresholds below 1 behave as 1. */
	health_fsm_init(&f, 0, -4, HEALTH_CHECKING);
	is_int(f.rise, 1, "rise 0 taken as 1");
	is_int(f.fall, 1, "fall -4 taken as 1");
	/* Streaks after a change start from zero. */
	health_fsm_init(&f, 2, 3, HEALTH_CHECKING);
	health_fsm_step(&f, true);
	health_fsm_step(&f, true);
	is_int(f.ok_streak, 0, "ok_streak reset on change");
	is_int(f.fail_streak, 0, "fail_streak reset on change");
	health_fsm_step(&f, false);
	is_int(f.fail_streak, 1, "fail_streak counts");
	health_fsm_step(&f, true);
	is_int(f.fail_streak, 0, "success clears fail_streak");
}

/* Exhaustive: the machine against a direct model over all 10-step
 * scripts for small thresholds. */
static void
test_fsm_model(void)
{
	int bad = 0, runs = 0;

	for (int rise = 1; rise <= 4; rise++)
	for (int fall = 1; fall <= 4; fall++)
	for (int init = 0; init < 3; init++)
	for (unsigned m = 0; m < 1024; m++) {
		struct health_fsm	f;
		enum server_health	st = (enum server_health)init;
		int			run_ok = 0, run_fail = 0;

		health_fsm_init(&f, rise, fall, st);
		for (int i = 0; i < 10; i++) {
			bool r = (m >> i) & 1;

			if (r) {
				run_ok++;
				run_fail = 0;
			} else {
				run_fail++;
				run_ok = 0;
			}
			if (st != HEALTH_UP && run_ok >= rise) {
				st = HEALTH_UP;
				run_ok = run_fail = 0;
			} else if (st != HEALTH_DOWN && run_fail >= fall) {
				st = HEALTH_DOWN;
				run_ok = run_fail = 0;
			}
			health_fsm_step(&f, r);
			if (f.state != st)
				bad++;
		}
		runs++;
	}
	ok(bad == 0, "machine equals the consecutive-run model over %d "
	    "scripts (%d mismatches)", runs, bad);
}

static void
test_http_status(void)
{
#define ST(s) health_http_status(s, sizeof(s) - 1)
	is_int(ST("HTTP/1.1 200 OK"), 200, "status 200");
	is_int(ST("HTTP/1.0 500 Internal Server Error\r"), 500, "status 500");
	is_int(ST("HTTP/1.1 302\r"), 302, "status without reason");
	is_int(ST("HTTP/1.1 204"), 204, "status, line end");
	is_int(ST("HTTP/2.0 404 Not Found"), 404, "version 2.0");
	is_int(ST("HTTP/1.1 20 OK"), -1, "two digits");
	is_int(ST("HTTP/1.1 2000 OK"), -1, "four digits");
	is_int(ST("HTTP/1.1 099 X"), -1, "below 100");
	is_int(ST("HTTP/1.1  200 OK"), -1, "two spaces");
	is_int(ST("HTTP/11 200 OK"), -1, "bad version");
	is_int(ST("http/1.1 200 OK"), -1, "lower case");
	is_int(ST("SSH-2.0-OpenSSH"), -1, "not http");
	is_int(ST(""), -1, "empty");
	is_int(ST("HTTP/1.1"), -1, "truncated");
#undef ST
}

/* ------------------------------------------------------------------ */
/* Real checks against peers served from the same loop. */

enum peer_mode {
	PEER_CLOSE,		/* accept, close */
	PEER_HTTP200,
	PEER_HTTP500,
	PEER_GARBAGE,
	PEER_SILENT,		/* accept, never answer */
	PEER_PONG,
};

struct peer {
	ev_io		 io;
	int		 fd;
	int		 port;
	enum peer_mode	 mode;
	int		 held[64];	/* silent connections */
	int		 nheld;
	int		 accepted;
};

static void
peer_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct peer	*p = w->data;
	const char	*reply = NULL;
	int		 c;

	(void)loop;
	(void)revents;
	while ((c = accept(p->fd, NULL, NULL)) != -1) {
		p->accepted++;
		switch (p->mode) {
		case PEER_HTTP200:
			reply = "HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n";
			break;
		case PEER_HTTP500:
			reply = "HTTP/1.0 500 Oops\r\n\r\n";
			break;
		case PEER_GARBAGE:
			reply = "hello there\r\n";
			break;
		case PEER_PONG:
			reply = "+PONG\r\n";
			break;
		case PEER_SILENT:
			if (p->nheld < 64) {
				p->held[p->nheld++] = c;
				continue;
			}
			break;
		case PEER_CLOSE:
			break;
		}
		if (reply != NULL)
			(void)send(c, reply, strlen(reply), MSG_NOSIGNAL);
		close(c);
	}
}

static void
peer_start(struct ev_loop *loop, struct peer *p, enum peer_mode mode)
{
	struct sockaddr_in	sin;
	socklen_t		len = sizeof(sin);

	memset(p, 0, sizeof(*p));
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	p->mode = mode;
	p->fd = net_listen((struct sockaddr *)&sin, sizeof(sin), false, 64);
	if (p->fd == -1) {
		perror("net_listen");
		exit(1);
	}
	getsockname(p->fd, (struct sockaddr *)&sin, &len);
	p->port = ntohs(sin.sin_port);
	ev_io_init(&p->io, peer_cb, p->fd, EV_READ);
	p->io.data = p;
	ev_io_start(loop, &p->io);
}

static void
peer_stop(struct ev_loop *loop, struct peer *p)
{
	ev_io_stop(loop, &p->io);
	if (p->fd != -1)
		close(p->fd);
	p->fd = -1;
	for (int i = 0; i < p->nheld; i++)
		close(p->held[i]);
	p->nheld = 0;
}

/* A port with (very likely) nothing listening: bind, read, close. */
static int
dead_port(void)
{
	struct peer	p;
	struct ev_loop *l = ev_loop_new(EVFLAG_AUTO);
	int		port;

	peer_start(l, &p, PEER_CLOSE);
	port = p.port;
	peer_stop(l, &p);
	ev_loop_destroy(l);
	return port;
}

static struct backend *
mkbackend(enum conf_check check, int rise, int fall, uint32_t timeout_ms)
{
	struct conf_backend cb;

	memset(&cb, 0, sizeof(cb));
	snprintf(cb.name, sizeof(cb.name), "app");
	cb.check = check;
	snprintf(cb.check_http_method, sizeof(cb.check_http_method), "GET");
	snprintf(cb.check_http_path, sizeof(cb.check_http_path), "/health");
	cb.check_interval_ms = 10;
	cb.check_timeout_ms = timeout_ms;
	cb.rise = rise;
	cb.fall = fall;
	cb.retries = 2;
	cb.timeout_connect_ms = 1000;
	return backend_new(&cb);
}

static struct server *
addsrv(struct backend *be, const char *name, int port)
{
	struct sockaddr_in	 sin;
	struct server		*s;

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sin.sin_port = htons((uint16_t)port);
	s = server_add(be, name, (struct sockaddr *)&sin, sizeof(sin), 1, 0,
	    false, SRC_STATIC);
	server_publish(be);
	return s;
}

static void
tick_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	(void)loop;
	(void)t;
	(void)revents;
}

/* Run the loop until the server has `want` health and last check `code`
 * (NULL: any), or `secs` pass. */
static bool
run_until(struct ev_loop *loop, struct server *s, enum server_health want,
    const char *code, double secs)
{
	ev_timer	tick;
	double		end = ev_time() + secs;
	bool		got = false;

	ev_timer_init(&tick, tick_cb, 0.005, 0.005);
	ev_timer_start(loop, &tick);
	while (ev_time() < end) {
		if (s->health == want && (code == NULL ||
		    strcmp(s->check_result, code) == 0)) {
			got = true;
			break;
		}
		ev_run(loop, EVRUN_ONCE);
	}
	ev_timer_stop(loop, &tick);
	return got;
}

static void
run_for(struct ev_loop *loop, double secs)
{
	ev_timer	tick;
	double		end = ev_time() + secs;

	ev_timer_init(&tick, tick_cb, 0.005, 0.005);
	ev_timer_start(loop, &tick);
	while (ev_time() < end)
		ev_run(loop, EVRUN_ONCE);
	ev_timer_stop(loop, &tick);
}

static int
fd_count(void)
{
	DIR		*d = opendir("/proc/self/fd");
	struct dirent	*e;
	int		 n = 0;

	if (d == NULL)
		return -1;
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

/*
 * One check type against one peer: the server must reach `want` with the
 * last result `code`, and its detail must contain `detail` (if given).
 */
static void
check_case(struct ev_loop *loop, enum conf_check check, enum peer_mode mode,
    bool refused, enum server_health want, const char *code,
    const char *detail, const char *name)
{
	struct backend_list	 list;
	struct backend		*be;
	struct server		*s;
	struct peer		 p;
	int			 port;
	bool			 got;

	TAILQ_INIT(&list);
	be = mkbackend(check, 1, 1, 100);
	if (check == CHECK_SEND_EXPECT) {
		memcpy(be->conf.check_send, "PING\r\n", 6);
		be->conf.check_send_len = 6;
		memcpy(be->conf.check_expect, "+PONG", 5);
		be->conf.check_expect_len = 5;
	}
	TAILQ_INSERT_TAIL(&list, be, entry);
	if (refused) {
		port = dead_port();
		p.fd = -1;
	} else {
		peer_start(loop, &p, mode);
		port = p.port;
	}
	s = addsrv(be, "s1", port);
	is_int(s->health, HEALTH_CHECKING, "new checked server starts checking");
	health_start(loop, &list);
	got = run_until(loop, s, want, code, 3.0);
	ok(got, "%s: %s (%s: %s)", name, code, s->check_result,
	    s->check_detail);
	if (detail != NULL)
		ok(strstr(s->check_detail, detail) != NULL,
		    "%s: detail \"%s\" has \"%s\"", name, s->check_detail,
		    detail);
	ok(s->last_check > 0 && s->check_duration_ms >= 0,
	    "%s: last_check and duration recorded", name);
	health_stop();
	ok(s->check == NULL, "%s: health_stop freed the check state", name);
	if (!refused)
		peer_stop(loop, &p);
	TAILQ_REMOVE(&list, be, entry);
	backend_free(be);
}

static void
test_real_checks(struct ev_loop *loop)
{
	struct backend_list	empty;
	int			fds;

	/* The loop's own async pipe appears at the first ev_async_start. */
	TAILQ_INIT(&empty);
	health_start(loop, &empty);
	health_stop();
	fds = fd_count();

	check_case(loop, CHECK_TCP, PEER_CLOSE, false, HEALTH_UP, "L4OK",
	    "connected", "tcp ok");
	check_case(loop, CHECK_TCP, PEER_CLOSE, true, HEALTH_DOWN, "L4CON",
	    "connection refused", "tcp refused");
	check_case(loop, CHECK_HTTP, PEER_HTTP200, false, HEALTH_UP, "L7OK",
	    "HTTP 200", "http 200");
	check_case(loop, CHECK_HTTP, PEER_HTTP500, false, HEALTH_DOWN, "L7STS",
	    "HTTP 500", "http 500");
	check_case(loop, CHECK_HTTP, PEER_GARBAGE, false, HEALTH_DOWN, "L7RSP",
	    "malformed", "http garbage");
	check_case(loop, CHECK_HTTP, PEER_CLOSE, false, HEALTH_DOWN, "L7RSP",
	    NULL, "http closed");
	check_case(loop, CHECK_HTTP, PEER_SILENT, false, HEALTH_DOWN, "L7TOUT",
	    NULL, "http silent");
	check_case(loop, CHECK_HTTP, PEER_CLOSE, true, HEALTH_DOWN, "L4CON",
	    NULL, "http refused");
	check_case(loop, CHECK_SEND_EXPECT, PEER_PONG, false, HEALTH_UP,
	    "L7OK", NULL, "send-expect ok");
	check_case(loop, CHECK_SEND_EXPECT, PEER_GARBAGE, false, HEALTH_DOWN,
	    "L7RSP", "unexpected reply", "send-expect mismatch");
	check_case(loop, CHECK_SEND_EXPECT, PEER_SILENT, false, HEALTH_DOWN,
	    "L7TOUT", NULL, "send-expect silent");
	check_case(loop, CHECK_TLS, PEER_PONG, false, HEALTH_DOWN, "L6RSP",
	    NULL, "tls against plain text");
	check_case(loop, CHECK_TLS, PEER_SILENT, false, HEALTH_DOWN, "L6TOUT",
	    NULL, "tls silent");
	check_case(loop, CHECK_TLS, PEER_CLOSE, true, HEALTH_DOWN, "L4CON",
	    NULL, "tls refused");
	is_int(fd_count(), fds, "no fd left after the real checks");
}

/* The request an http check sends, as the peer sees it. */
static void
test_http_request(struct ev_loop *loop)
{
	struct backend_list	 list;
	struct backend		*be;
	struct server		*s;
	struct peer		 p;
	char			 buf[1024], want[256];
	ssize_t			 n = 0;
	int			 c = -1;

	TAILQ_INIT(&list);
	be = mkbackend(CHECK_HTTP, 1, 1, 200);
	TAILQ_INSERT_TAIL(&list, be, entry);
	peer_start(loop, &p, PEER_SILENT);
	s = addsrv(be, "s1", p.port);
	health_start(loop, &list);
	for (int i = 0; i < 400 && p.nheld == 0; i++)
		run_for(loop, 0.005);
	if (p.nheld > 0) {
		c = p.held[0];
		for (int i = 0; i < 200; i++) {
			ssize_t r = recv(c, buf + n, sizeof(buf) - 1 - (size_t)n,
			    MSG_DONTWAIT);

			if (r > 0)
				n += r;
			if (n > 4 && memmem(buf, (size_t)n, "\r\n\r\n", 4))
				break;
			run_for(loop, 0.002);
		}
	}
	buf[n > 0 ? n : 0] = '\0';
	snprintf(want, sizeof(want), "GET /health HTTP/1.1\r\n"
	    "Host: 127.0.0.1:%d\r\nConnection: close\r\n"
	    "User-Agent: shoal-check\r\n\r\n", p.port);
	ok(strcmp(buf, want) == 0, "http request as specified (got %zd bytes)",
	    n);
	health_stop();
	peer_stop(loop, &p);
	(void)s;
	TAILQ_REMOVE(&list, be, entry);
	backend_free(be);
}

/* Hysteresis with real checks: rise 3 successes, then fall 2 failures. */
static void
test_real_rise_fall(struct ev_loop *loop)
{
	struct backend_list	 list;
	struct backend		*be;
	struct server		*s;
	struct peer		 p;
	int			 before;

	TAILQ_INIT(&list);
	be = mkbackend(CHECK_TCP, 3, 2, 100);
	TAILQ_INSERT_TAIL(&list, be, entry);
	peer_start(loop, &p, PEER_CLOSE);
	s = addsrv(be, "s1", p.port);
	health_start(loop, &list);
	ok(run_until(loop, s, HEALTH_UP, NULL, 3.0), "rise: up");
	ok(p.accepted >= 3, "up only after >= rise (3) checks (%d)",
	    p.accepted);
	before = p.accepted;
	peer_stop(loop, &p);
	ok(run_until(loop, s, HEALTH_DOWN, NULL, 3.0), "fall: down");
	ok(strcmp(s->check_result, "L4CON") == 0, "down by L4CON");
	(void)before;

	/* maint stops checks; leaving maint restarts from checking. */
	server_set_admin(s, ADM_MAINT, "test");
	health_admin_changed(s);
	{
		double last = s->last_check;

		run_for(loop, 0.1);
		ok(s->last_check == last, "no check in maint");
	}
	peer_start(loop, &p, PEER_CLOSE);
	be->conf.check_port = p.port;		/* check_port: another port */
	server_set_admin(s, ADM_READY, "test");
	health_admin_changed(s);
	is_int(s->health, HEALTH_CHECKING, "leaving maint: checking");
	ok(run_until(loop, s, HEALTH_UP, NULL, 3.0),
	    "back up through check_port");
	ok(p.accepted >= 3, "check_port got the checks (%d)", p.accepted);

	/* health_remove stops the checks and frees the state. */
	health_remove(s);
	ok(s->check == NULL, "health_remove freed the state");
	before = p.accepted;
	run_for(loop, 0.1);
	is_int(p.accepted, before, "no check after health_remove");
	health_stop();
	peer_stop(loop, &p);
	TAILQ_REMOVE(&list, be, entry);
	backend_free(be);
}

/* Passive: fall failures from traffic mark an up server down at once;
 * with check = none it comes back after one interval. */
static void
test_passive(struct ev_loop *loop)
{
	struct backend_list	 list;
	struct backend		*be;
	struct server		*s;

	TAILQ_INIT(&list);
	be = mkbackend(CHECK_NONE, 2, 3, 100);
	be->conf.check_interval_ms = 200;
	TAILQ_INSERT_TAIL(&list, be, entry);
	s = addsrv(be, "s1", dead_port());
	health_start(loop, &list);
	is_int(s->health, HEALTH_UP, "check = none: up at once");
	ok(s->check == NULL, "check = none: no check state");
	server_note_failure(s);
	server_note_failure(s);
	run_for(loop, 0.02);
	is_int(s->health, HEALTH_UP, "two failures: still up (fall 3)");
	server_note_failure(s);
	ok(run_until(loop, s, HEALTH_DOWN, NULL, 1.0),
	    "third failure: passively down");
	{
		double t0 = ev_time();

		ok(run_until(loop, s, HEALTH_UP, NULL, 2.0),
		    "check = none: back up after the retry interval");
		ok(ev_time() - t0 > 0.15, "not before the interval (%.3fs)",
		    ev_time() - t0);
	}
	is_int(atomic_load(&s->fail_streak), 0, "streak reset when up");
	health_stop();
	TAILQ_REMOVE(&list, be, entry);
	backend_free(be);

	/* With checks: passively down, then rise checks bring it back. */
	{
		struct peer p;

		TAILQ_INIT(&list);
		be = mkbackend(CHECK_TCP, 2, 3, 100);
		be->conf.check_interval_ms = 50;
		TAILQ_INSERT_TAIL(&list, be, entry);
		peer_start(loop, &p, PEER_CLOSE);
		s = addsrv(be, "s1", p.port);
		health_start(loop, &list);
		ok(run_until(loop, s, HEALTH_UP, NULL, 2.0), "checked: up");
		for (int i = 0; i < 3; i++)
			server_note_failure(s);
		ok(run_until(loop, s, HEALTH_DOWN, NULL, 1.0),
		    "checked: passively down");
		ok(strcmp(s->check_result, "L4OK") == 0,
		    "while the checks still pass");
		ok(run_until(loop, s, HEALTH_UP, NULL, 2.0),
		    "checked: back up by rise checks");
		health_stop();
		peer_stop(loop, &p);
		TAILQ_REMOVE(&list, be, entry);
		backend_free(be);
	}
}

/* Many servers: the first checks spread over one interval. */
static void
test_spread(struct ev_loop *loop)
{
	struct backend_list	 list;
	struct backend		*be;
	struct server		*s[40];
	struct peer		 p;
	int			 early;

	TAILQ_INIT(&list);
	be = mkbackend(CHECK_TCP, 1, 1, 100);
	be->conf.check_interval_ms = 400;
	TAILQ_INSERT_TAIL(&list, be, entry);
	peer_start(loop, &p, PEER_CLOSE);
	for (int i = 0; i < 40; i++) {
		char name[16];

		snprintf(name, sizeof(name), "s%d", i);
		s[i] = addsrv(be, name, p.port);
	}
	health_start(loop, &list);
	run_for(loop, 0.1);
	early = 0;
	for (int i = 0; i < 40; i++)
		if (s[i]->last_check > 0)
			early++;
	ok(early > 0 && early < 30, "first checks spread: %d of 40 in the "
	    "first quarter interval", early);
	run_for(loop, 0.45);
	early = 0;
	for (int i = 0; i < 40; i++)
		if (s[i]->health == HEALTH_UP)
			early++;
	is_int(early, 40, "all checked within one interval");
	health_stop();
	peer_stop(loop, &p);
	TAILQ_REMOVE(&list, be, entry);
	backend_free(be);
}

/* Health alone decides whether a backend's new settings change checks. */
static void
test_settings_changed(void)
{
	struct conf_backend a, b;

	memset(&a, 0, sizeof(a));
	a.check = CHECK_HTTP;
	snprintf(a.check_http_path, sizeof(a.check_http_path), "/");
	a.rise = 2;
	a.fall = 3;
	a.check_interval_ms = 2000;
	b = a;
	ok(!health_settings_changed(&a, &b), "same settings: unchanged");
	b.timeout_connect_ms = 999;
	b.max_discovered = 7;
	ok(!health_settings_changed(&a, &b), "settings checks do not use "
	    "(timeouts, max_discovered): unchanged");
	b = a;
	snprintf(b.check_http_path, sizeof(b.check_http_path), "/health");
	ok(health_settings_changed(&a, &b), "another check path: changed");
	b = a;
	b.fall = 4;
	ok(health_settings_changed(&a, &b), "another fall: changed");
	b = a;
	b.check_send_len = 1;
	ok(health_settings_changed(&a, &b), "a send string: changed");
}

int
main(void)
{
	struct ev_loop *loop;

	signal(SIGPIPE, SIG_IGN);
	if (getenv("TEST_HEALTH_DEBUG") != NULL)
		log_set_level(LOG_LVL_DEBUG);
	else
		log_set_level(LOG_LVL_ERROR);
	test_fsm();
	test_fsm_model();
	test_http_status();
	test_settings_changed();
	loop = ev_loop_new(EVFLAG_AUTO);
	test_real_checks(loop);
	test_http_request(loop);
	test_real_rise_fall(loop);
	test_passive(loop);
	test_spread(loop);
	ev_loop_destroy(loop);
	qsbr_drain();
	return done_testing();
}
