/*
 * test_relay.c - the relay state machine, driven without a session: two
 * loopback TCP pairs stand for the client and the server, a private libev
 * loop turns. Half-close, backpressure, RST and the roles' hooks.
 */
#include <sys/socket.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "net.h"
#include "relay.h"
#include "t.h"

/* What the roles and the exit heard. */
struct seen {
	int		 first_read[2];	/* [0] client side, [1] server side */
	int		 failed[2];
	int		 ended[2];
	const char	*term;
	bool		 rst;
	int		 closes;
};

static struct seen	 seen;
static struct buf_pool	 bufs;

static int
which(struct relay_side *sd)
{
	return sd == &sd->r->srv;
}

static void
hook_first(struct relay_side *sd)
{
	seen.first_read[which(sd)]++;
}

static void
hook_failed(struct relay_side *sd)
{
	seen.failed[which(sd)]++;
}

static void
hook_ended(struct relay_side *sd)
{
	seen.ended[which(sd)]++;
}

static const struct relay_role cli_role = {
	"client", "CD", hook_first, hook_failed, hook_ended,
};
static const struct relay_role srv_role = {
	"server", "SD", hook_first, hook_failed, hook_ended,
};

static void
close_cb(struct relay *r, const char *term, bool rst)
{
	seen.term = term;
	seen.rst = rst;
	seen.closes++;
	relay_side_close(&r->cli, rst);
	relay_side_close(&r->srv, rst);
}

/* A connected loopback TCP pair: *mine (non-blocking) and *peer. */
static void
tcp_pair(int *mine, int *peer)
{
	struct sockaddr_in	sin;
	socklen_t		len = sizeof(sin);
	int			l;

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if ((l = socket(AF_INET, SOCK_STREAM, 0)) == -1 ||
	    bind(l, (struct sockaddr *)&sin, sizeof(sin)) == -1 ||
	    listen(l, 1) == -1 ||
	    getsockname(l, (struct sockaddr *)&sin, &len) == -1 ||
	    (*peer = socket(AF_INET, SOCK_STREAM, 0)) == -1 ||
	    connect(*peer, (struct sockaddr *)&sin, sizeof(sin)) == -1 ||
	    (*mine = accept(l, NULL, NULL)) == -1) {
		perror("tcp_pair");
		exit(2);
	}
	close(l);
	fcntl(*mine, F_SETFL, fcntl(*mine, F_GETFL) | O_NONBLOCK);
}

struct rig {
	struct relay	 r;
	struct ev_loop	*loop;
	int		 client;	/* the client's end */
	int		 server;	/* the server's end */
};

static void
rig_start(struct rig *g, bool splice)
{
	memset(&seen, 0, sizeof(seen));
	memset(g, 0, sizeof(*g));
	relay_set_splice(splice);
	g->loop = ev_loop_new(EVFLAG_AUTO);
	relay_init(&g->r, &cli_role, &srv_role);
	g->r.loop = g->loop;
	g->r.bufs = &bufs;
	g->r.close = close_cb;
	tcp_pair(&g->r.cli.fd, &g->client);
	tcp_pair(&g->r.srv.fd, &g->server);
	relay_start(&g->r);
}

static void
rig_end(struct rig *g)
{
	if (seen.closes == 0)
		close_cb(&g->r, "test", false);
	relay_pipes_release();
	if (g->client != -1)
		close(g->client);
	if (g->server != -1)
		close(g->server);
	ev_loop_destroy(g->loop);
}

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Turn the loop until *flag is non-zero or 2 s passed. */
static bool
turn_until(struct rig *g, const int *flag)
{
	double end = now_s() + 2;

	while (*flag == 0 && now_s() < end)
		ev_run(g->loop, EVRUN_ONCE | EVRUN_NOWAIT);
	return *flag != 0;
}

/* Read exactly n bytes from fd (blocking peer end), turning the loop. */
static ssize_t
read_n(struct rig *g, int fd, char *dst, size_t n)
{
	size_t	got = 0;
	double	end = now_s() + 5;

	while (got < n && now_s() < end) {
		ssize_t k;

		ev_run(g->loop, EVRUN_ONCE | EVRUN_NOWAIT);
		k = recv(fd, dst + got, n - got, MSG_DONTWAIT);
		if (k > 0)
			got += (size_t)k;
		else if (k == 0)
			break;
		else if (errno != EAGAIN)
			return -1;
	}
	return (ssize_t)got;
}

/* recv() on a peer end once the loop had the chance to act: 0 = EOF. */
static ssize_t
recv_turning(struct rig *g, int fd, int *err)
{
	char	c;
	double	end = now_s() + 2;

	*err = 0;
	while (now_s() < end) {
		ssize_t k;

		ev_run(g->loop, EVRUN_ONCE | EVRUN_NOWAIT);
		k = recv(fd, &c, 1, MSG_DONTWAIT);
		if (k >= 0)
			return k;
		if (errno != EAGAIN) {
			*err = errno;
			return -1;
		}
	}
	*err = EAGAIN;
	return -1;
}

static void
test_both_ways(void)
{
	struct rig	g;
	char		buf[16];
	ssize_t		n;

	rig_start(&g, false);
	send(g.client, "hello", 5, 0);
	n = read_n(&g, g.server, buf, 5);
	is_int(n, 5, "client bytes reach the server");
	ok(memcmp(buf, "hello", 5) == 0, "intact");
	is_int(seen.first_read[1], 0, "the server has not spoken yet");
	send(g.server, "world!", 6, 0);
	n = read_n(&g, g.client, buf, 6);
	is_int(n, 6, "server bytes reach the client");
	is_int(seen.first_read[1], 1, "the server's role hears its first byte");
	send(g.server, "again", 5, 0);
	read_n(&g, g.client, buf, 5);
	is_int(seen.first_read[1], 1, "... once");
	ok(g.r.srv.sent == 5 && g.r.cli.sent == 11,
	    "each side counts the bytes written to it (%llu, %llu)",
	    (unsigned long long)g.r.srv.sent,
	    (unsigned long long)g.r.cli.sent);
	is_int(seen.closes, 0, "nothing closed");
	rig_end(&g);
}

/* The client's FIN reaches the server; the other way keeps flowing; the
 * relay ends cleanly once both have ended. */
static void
test_half_close(void)
{
	struct rig	g;
	char		buf[8];
	int		err;
	ssize_t		n;
	bool		closed;

	rig_start(&g, false);
	send(g.client, "req", 3, 0);
	shutdown(g.client, SHUT_WR);
	n = read_n(&g, g.server, buf, 3);
	is_int(n, 3, "half-close: request arrives");
	n = recv_turning(&g, g.server, &err);
	is_int(n, 0, "half-close: then the server reads EOF");
	send(g.server, "reply", 5, 0);
	n = read_n(&g, g.client, buf, 5);
	is_int(n, 5, "half-close: the reply still reaches the client");
	is_int(seen.closes, 0, "half-close: the relay stays open");
	shutdown(g.server, SHUT_WR);
	closed = turn_until(&g, &seen.closes);
	ok(closed && strcmp(seen.term, "--") == 0 &&
	    !seen.rst, "both ended: a clean close (term %s)",
	    seen.term ? seen.term : "none");
	ok(seen.ended[0] == 1 && seen.ended[1] == 1,
	    "both roles hear the clean end");
	n = recv_turning(&g, g.client, &err);
	is_int(n, 0, "the client reads EOF after the reply");
	is_int(bufs.out, 0, "every buffer went back to the pool");
	rig_end(&g);
}

/* A server that writes while the client does not read: the relay holds
 * at most one batch, the server's writes block; then all of it arrives. */
static void
test_backpressure(bool splice)
{
	struct rig	 g;
	char		*chunk = calloc(1, 65536), *sink = malloc(65536);
	size_t		 written = 0, got = 0;
	double		 end;
	int		 stalls = 0;

	rig_start(&g, splice);
	fcntl(g.server, F_SETFL, fcntl(g.server, F_GETFL) | O_NONBLOCK);
	end = now_s() + 5;
	/* Write until the server's end has blocked several loop turns in a
	 * row: every buffer on the way is full. */
	while (stalls < 50 && now_s() < end) {
		ssize_t k = send(g.server, chunk, 65536, 0);

		if (k > 0) {
			written += (size_t)k;
			stalls = 0;
		} else
			stalls++;
		ev_run(g.loop, EVRUN_ONCE | EVRUN_NOWAIT);
	}
	ok(stalls >= 50 && written < (64u << 20),
	    "backpressure (%s): the server's writes block after %zu KiB",
	    splice ? "splice" : "copy", written / 1024);
	ok(bufs.out <= 1, "backpressure: the relay holds at most one buffer "
	    "(%zu)", bufs.out);
	while (got < written && now_s() < end) {
		ssize_t k;

		ev_run(g.loop, EVRUN_ONCE | EVRUN_NOWAIT);
		k = recv(g.client, sink, 65536, MSG_DONTWAIT);
		if (k > 0)
			got += (size_t)k;
	}
	is_int(got, written, "backpressure: the client gets every byte");
	is_int(g.r.cli.sent, written, "backpressure: counted once each");
	free(chunk);
	free(sink);
	rig_end(&g);
}

/* A server that resets before it spoke: its role hears the failure, the
 * relay closes with RSTs and the server's termination code. */
static void
test_rst(void)
{
	struct rig	g;
	struct linger	lg = { 1, 0 };
	char		buf[4];
	int		err;
	ssize_t		n;
	bool		closed;

	rig_start(&g, false);
	send(g.client, "abc", 3, 0);
	read_n(&g, g.server, buf, 3);
	setsockopt(g.server, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(g.server);
	g.server = -1;
	send(g.client, "more", 4, 0);
	closed = turn_until(&g, &seen.closes);
	ok(closed && seen.term != NULL &&
	    strcmp(seen.term, "SD") == 0 && seen.rst,
	    "server RST: the relay closes with SD and RSTs (%s)",
	    seen.term ? seen.term : "open");
	ok(seen.failed[1] == 1 && seen.failed[0] == 0,
	    "server RST: only the server's role hears the failure");
	n = recv_turning(&g, g.client, &err);
	ok(n == -1 && err == ECONNRESET,
	    "server RST: the client sees a reset, not a clean EOF (%s)",
	    strerror(err));
	rig_end(&g);
}

/* Connecting: the client's first bytes go out with one send. */
static void
test_connect_send(void)
{
	struct rig	g;
	char		buf[8];
	ssize_t		n;

	memset(&seen, 0, sizeof(seen));
	memset(&g, 0, sizeof(g));
	relay_set_splice(false);
	g.loop = ev_loop_new(EVFLAG_AUTO);
	relay_init(&g.r, &cli_role, &srv_role);
	g.r.loop = g.loop;
	g.r.bufs = &bufs;
	g.r.close = close_cb;
	tcp_pair(&g.r.cli.fd, &g.client);
	tcp_pair(&g.r.srv.fd, &g.server);
	n = relay_connect_send(&g.r, true);
	is_int(n, RELAY_WAIT, "connect_send: nothing from the client yet: "
	    "wait");
	send(g.client, "GET /", 5, 0);
	/* The call below reads once: wait (bounded) until there is data. */
	poll(&(struct pollfd){ .fd = g.r.cli.fd, .events = POLLIN }, 1, 2000);
	n = relay_connect_send(&g.r, true);
	is_int(n, RELAY_SENT,
	    "connect_send: the client's bytes went to the server");
	n = recv(g.server, buf, sizeof(buf), MSG_DONTWAIT);
	is_int(n, 5, "... all 5 of them");
	is_int(g.r.srv.sent, 5, "... counted on the server side");
	rig_end(&g);
}

int
main(void)
{
	buf_pool_init(&bufs, 4);
	test_both_ways();
	test_half_close();
	test_backpressure(false);
	test_backpressure(true);
	test_rst();
	test_connect_send();
	buf_pool_fini(&bufs);
	return done_testing();
}
