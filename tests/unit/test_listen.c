/*
 * test_listen.c - systemd socket activation: the variables, and the sockets
 * spread over the workers.
 */
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf.h"
#include "listen.h"
#include "net.h"
#include "t.h"

static char names[8][LISTEN_NAME_MAX];
static char err[256];

static int
parse(const char *pid, const char *fds, const char *fdnames)
{
	err[0] = '\0';
	return listen_env_parse(pid, fds, fdnames, 4242, names, 8, err,
	    sizeof(err));
}

static struct conf_addr
loopback(int port)
{
	struct conf_addr	 a;
	struct sockaddr_in	*sin = (struct sockaddr_in *)&a.ss;

	memset(&a, 0, sizeof(a));
	sin->sin_family = AF_INET;
	sin->sin_port = htons((uint16_t)port);
	sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	a.len = sizeof(*sin);
	return a;
}

/* A listening socket on 127.0.0.1 placed at fd `at`; its port. */
static int
listener_at(int at)
{
	struct conf_addr	a = loopback(0);
	struct sockaddr_in	sin;
	socklen_t		len = sizeof(sin);
	int			fd = net_listen((struct sockaddr *)&a.ss, a.len,
				    false, 16);

	if (fd == -1)
		return -1;
	if (fd != at) {
		if (dup2(fd, at) == -1)
			return -1;
		close(fd);
	}
	/* as systemd passes them: blocking, inheritable */
	fcntl(at, F_SETFL, fcntl(at, F_GETFL) & ~O_NONBLOCK);
	fcntl(at, F_SETFD, 0);
	getsockname(at, (struct sockaddr *)&sin, &len);
	return ntohs(sin.sin_port);
}

static bool
same_socket(int a, int b)
{
	struct sockaddr_in	x, y;
	socklen_t		lx = sizeof(x), ly = sizeof(y);

	return getsockname(a, (struct sockaddr *)&x, &lx) == 0 &&
	    getsockname(b, (struct sockaddr *)&y, &ly) == 0 &&
	    x.sin_port == y.sin_port;
}

int
main(void)
{
	struct conf	*conf;
	char		 cerr[CONF_ERR_MAX], text[512], pid[32];
	int		 p1, p2, fds[LISTEN_PER_WORKER_MAX], n, fl, rc;
	struct conf_addr a1, a2, a3;

	/* The variables. */
	is_int(parse(NULL, NULL, NULL), 0, "no LISTEN_FDS: nothing passed");
	is_int(parse("4242", "2", "web:admin"), 2, "two fds for us");
	ok(strcmp(names[0], "web") == 0 && strcmp(names[1], "admin") == 0,
	    "names in order");
	is_int(parse("4242", "1", NULL), 1, "names are optional");
	ok(names[0][0] == '\0', "no name is \"\"");
	is_int(parse("4243", "2", "a:b"), 0,
	    "LISTEN_PID of another process: not ours");
	is_int(parse(NULL, "2", NULL), 0, "no LISTEN_PID: not ours");
	is_int(parse("4242", "0", NULL), 0, "zero fds");
	is_int(parse("4242", "x", NULL), -1, "LISTEN_FDS=x refused");
	ok(strstr(err, "LISTEN_FDS=x") != NULL, "message names it: %s", err);
	is_int(parse("4242", "-1", NULL), -1, "a negative count refused");
	is_int(parse("4242", "99999", NULL), -1, "an absurd count refused");
	is_int(parse("12ab", "1", NULL), -1, "LISTEN_PID=12ab refused");
	is_int(parse("4242", "2", "web"), -1, "one name for two fds refused");
	ok(strstr(err, "1 names for 2 fds") != NULL, "message: %s", err);
	is_int(parse("4242", "1", ""), 1, "one empty name");
	is_int(parse("4242", "2", "web:"), 2, "an empty second name");

	/* Sockets: fd 3 (named after frontend web) and fd 4 (unnamed). */
	p1 = listener_at(LISTEN_FDS_START);
	p2 = listener_at(LISTEN_FDS_START + 1);
	ok(p1 > 0 && p2 > 0, "two listening sockets at fds 3 and 4");
	snprintf(text, sizeof(text),
	    "[frontend web]\nbind = 127.0.0.1:%d\nbackend = b\n"
	    "[frontend api]\nbind = 127.0.0.1:%d\nbackend = b\n"
	    "[backend b]\nserver = s 127.0.0.1:9\n", p1, p2);
	conf = conf_load_string("t.ini", text, cerr);
	ok(conf != NULL, "config loads: %s", conf ? "" : cerr);
	snprintf(pid, sizeof(pid), "%ld", (long)getpid());
	setenv("LISTEN_PID", pid, 1);
	setenv("LISTEN_FDS", "2", 1);
	setenv("LISTEN_FDNAMES", "web:shoal.socket", 1);
	rc = listen_from_systemd(conf, err, sizeof(err));
	is_int(rc, 0, "sockets taken");
	ok(getenv("LISTEN_FDS") == NULL && getenv("LISTEN_PID") == NULL &&
	    getenv("LISTEN_FDNAMES") == NULL, "variables removed");
	fl = fcntl(LISTEN_FDS_START, F_GETFL);
	ok(fl != -1 && (fl & O_NONBLOCK), "made non-blocking");
	ok(fcntl(LISTEN_FDS_START, F_GETFD) & FD_CLOEXEC, "made close-on-exec");

	a1 = loopback(p1);
	a2 = loopback(p2);
	/* Not given to api: its own bind then finds the port taken. */
	n = listen_obtain(&a1, "api", 0, 2, 16, fds, LISTEN_PER_WORKER_MAX);
	ok(n == -1, "the socket named web does not serve frontend api");
	for (int w = 0; w < 3; w++) {
		n = listen_obtain(&a1, "web", w, 3, 16, fds,
		    LISTEN_PER_WORKER_MAX);
		ok(n == 1 && fds[0] != LISTEN_FDS_START &&
		    same_socket(fds[0], LISTEN_FDS_START),
		    "worker %d of 3 gets a dup of the inherited socket", w);
		if (n == 1)
			close(fds[0]);
	}
	/* The unnamed socket (shoal.socket is no frontend) serves by address. */
	n = listen_obtain(&a2, "api", 1, 2, 16, fds, LISTEN_PER_WORKER_MAX);
	ok(n == 1 && same_socket(fds[0], LISTEN_FDS_START + 1),
	    "an unnamed socket serves the bind with its address");
	if (n == 1)
		close(fds[0]);
	/* A bind with no socket is bound as usual. */
	a3 = loopback(0);
	n = listen_obtain(&a3, "web", 0, 1, 16, fds, LISTEN_PER_WORKER_MAX);
	ok(n == 1 && !same_socket(fds[0], LISTEN_FDS_START) &&
	    !same_socket(fds[0], LISTEN_FDS_START + 1),
	    "a bind without an inherited socket gets a new one");
	if (n == 1)
		close(fds[0]);
	rc = listen_inherited_done(err, sizeof(err));
	is_int(rc, 0, "every systemd socket was used");
	ok(fcntl(LISTEN_FDS_START, F_GETFD) == -1, "the originals are closed");

	/* A socket no bind takes is an error. */
	p1 = listener_at(LISTEN_FDS_START);
	setenv("LISTEN_PID", pid, 1);
	setenv("LISTEN_FDS", "1", 1);
	unsetenv("LISTEN_FDNAMES");
	rc = listen_from_systemd(conf, err, sizeof(err));
	is_int(rc, 0, "taken");
	rc = listen_inherited_done(err, sizeof(err));
	is_int(rc, -1, "an unused systemd socket is an error");
	ok(strstr(err, "no bind line has that address") != NULL,
	    "message: %s", err);

	/* Not a listening socket: refused at once. */
	{
		int s = socket(AF_INET, SOCK_STREAM, 0);

		if (s != LISTEN_FDS_START) {
			dup2(s, LISTEN_FDS_START);
			close(s);
		}
	}
	setenv("LISTEN_PID", pid, 1);
	setenv("LISTEN_FDS", "1", 1);
	rc = listen_from_systemd(conf, err, sizeof(err));
	is_int(rc, -1, "a socket that does not listen is refused");
	ok(strstr(err, "not a listening socket") != NULL, "message: %s", err);
	(void)listen_inherited_done(err, sizeof(err));
	close(LISTEN_FDS_START);
	conf_free(conf);
	return done_testing();
}
