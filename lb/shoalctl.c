/*
 * shoalctl.c - the client of shoal's admin socket.
 *
 *   shoalctl [-s PATH|HOST:PORT] [-t SECONDS] COMMAND...
 *
 * Joins its arguments into one command line, sends it, prints the answer
 * (without the empty line that ends it) and exits 0, or 1 when the answer
 * is an error ("error: ..."), or 2 when it could not ask (usage, connect,
 * timeout, connection closed early). With no COMMAND and stdin not a
 * terminal, sends each line of stdin in turn (blank lines and lines
 * starting with '#' skipped) and exits 1 if any answer was an error.
 *
 * libc only: it is meant for scripts and hooks (Serf, systemd) on hosts
 * where only the binary is copied.
 */
#include <sys/socket.h>
#include <sys/un.h>

#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "admin.h"

#define EXIT_ANSWER_ERROR	1
#define EXIT_TROUBLE		2

static double	deadline_s = 10.0;	/* per command, -t */

static void
usage(FILE *f)
{
	char path[108];

	fprintf(f,
	    "usage: shoalctl [-s PATH|HOST:PORT] [-t SECONDS] COMMAND...\n"
	    "       shoalctl [-s PATH|HOST:PORT] < FILE\n"
	    "\n"
	    "Send a command to shoal's admin socket, print the answer.\n"
	    "\n"
	    "  -s, --socket PATH|HOST:PORT\n"
	    "        the admin socket: a unix socket path (anything with\n"
	    "        a '/'), or the TCP [admin] bind as HOST:PORT or\n"
	    "        [IPv6]:PORT; default %s\n"
	    "        ($RUNTIME_DIRECTORY/admin.sock, else\n"
	    "        " ADMIN_SOCKET_DEFAULT ")\n"
	    "  -t, --timeout SECONDS\n"
	    "        give up on a connect or an answer after this long\n"
	    "        (default 10)\n"
	    "  -h, --help     this help\n"
	    "  -V, --version  print the version\n"
	    "\n"
	    "Commands (the words are joined into one line):\n"
	    "  help                          the list, from shoal itself\n"
	    "  show info                     version, uptime, sessions,\n"
	    "                                reloads\n"
	    "  show servers [BACKEND]        the server table\n"
	    "  show stat json                the /stats.json document\n"
	    "  show discovery                announcements, verdicts\n"
	    "  show events [N]               the event timeline\n"
	    "  explain ADDR[:PORT] [FRONTEND]\n"
	    "                                where a new connection from\n"
	    "                                there goes now, and why\n"
	    "  report                        a Markdown snapshot\n"
	    "  set server B/S state ready|drain|maint\n"
	    "  set server B/S weight N       0..256\n"
	    "  set server B/S fault delay D|reset|blackhole|none\n"
	    "                                inject a fault (teaching)\n"
	    "  add server B/S ADDR:PORT [weight=N] [maxconn=N] [backup]\n"
	    "  del server B/S                drain it first if it has\n"
	    "                                sessions\n"
	    "  shutdown sessions server B/S  close its sessions (RST)\n"
	    "  reload                        re-read the config (SIGHUP)\n"
	    "B/S is BACKEND/SERVER, e.g. app/s1.\n"
	    "\n"
	    "Without COMMAND, and stdin not a terminal, each line of stdin\n"
	    "is one command (blank lines and '#' comments skipped).\n"
	    "\n"
	    "Exit status: 0 success; 1 an answer was an error (it starts\n"
	    "with \"error:\"); 2 usage, connection or timeout problem\n"
	    "(message on stderr).\n"
	    "\n"
	    "Examples:\n"
	    "  shoalctl show servers\n"
	    "  shoalctl set server app/s1 state drain\n"
	    "  shoalctl -s 127.0.0.1:9999 add server app/s3 10.0.0.3:80\n"
	    "  printf 'show info\\nshow servers\\n' | shoalctl -s /tmp/a.sock\n"
	    "\n"
	    "See shoalctl(1).\n",
	    admin_default_socket(path, sizeof(path)) != NULL ? path :
	    ADMIN_SOCKET_DEFAULT);
}

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Wait until fd is ready for events or the deadline; 0, or -1 (errno). */
static int
wait_fd(int fd, short events, double until)
{
	struct pollfd	pfd = { .fd = fd, .events = events };
	double		left;
	int		n;

	for (;;) {
		left = until - now_s();
		if (left <= 0) {
			errno = ETIMEDOUT;
			return -1;
		}
		n = poll(&pfd, 1, (int)(left * 1000) + 1);
		if (n > 0)
			return 0;
		if (n == -1 && errno != EINTR)
			return -1;
	}
}

/* Non-blocking connect with the deadline. The fd, or -1 (errno). */
static int
connect_to(const struct sockaddr *sa, socklen_t len, double until)
{
	int		fd, err;
	socklen_t	elen = sizeof(err);

	fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0);
	if (fd == -1)
		return -1;
	if (connect(fd, sa, len) == 0)
		return fd;
	if (errno != EINPROGRESS && errno != EAGAIN)
		goto fail;
	if (wait_fd(fd, POLLOUT, until) == -1)
		goto fail;
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) == -1)
		goto fail;
	if (err != 0) {
		errno = err;
		goto fail;
	}
	return fd;
fail:
	err = errno;
	close(fd);
	errno = err;
	return -1;
}

/*
 * Connect to target: a unix path (has a '/'), or HOST:PORT / [V6]:PORT.
 * The fd, or -1 with a message on stderr.
 */
static int
open_target(const char *target)
{
	struct addrinfo		 hints, *res, *ai;
	struct sockaddr_un	 sun;
	char			 host[256];
	const char		*port, *h = target, *end;
	double			 until = now_s() + deadline_s;
	int			 fd = -1, rc, err = 0;

	if (strchr(target, '/') != NULL) {
		memset(&sun, 0, sizeof(sun));
		sun.sun_family = AF_UNIX;
		if (strlen(target) >= sizeof(sun.sun_path)) {
			fprintf(stderr, "shoalctl: %s: path too long\n",
			    target);
			return -1;
		}
		memcpy(sun.sun_path, target, strlen(target) + 1);
		if ((fd = connect_to((struct sockaddr *)&sun, sizeof(sun),
		    until)) == -1)
			fprintf(stderr, "shoalctl: cannot connect to %s: %s\n",
			    target, strerror(errno));
		return fd;
	}
	if (*h == '[') {
		if ((end = strchr(++h, ']')) == NULL || end[1] != ':')
			goto bad;
		port = end + 2;
	} else {
		if ((end = strrchr(h, ':')) == NULL || memchr(h, ':',
		    (size_t)(end - h)) != NULL)
			goto bad;
		port = end + 1;
	}
	if (end == h || (size_t)(end - h) >= sizeof(host) || *port == '\0')
		goto bad;
	snprintf(host, sizeof(host), "%.*s", (int)(end - h), h);
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	if ((rc = getaddrinfo(host, port, &hints, &res)) != 0) {
		fprintf(stderr, "shoalctl: %s: %s\n", target, gai_strerror(rc));
		return -1;
	}
	for (ai = res; ai != NULL && fd == -1; ai = ai->ai_next)
		if ((fd = connect_to(ai->ai_addr, ai->ai_addrlen, until)) == -1)
			err = errno;
	freeaddrinfo(res);
	if (fd == -1)
		fprintf(stderr, "shoalctl: cannot connect to %s: %s\n", target,
		    strerror(err));
	return fd;
bad:
	fprintf(stderr, "shoalctl: bad socket '%s': expected a path (with a "
	    "'/') or HOST:PORT\n", target);
	return -1;
}

static int
send_all(int fd, const char *p, size_t n, double until)
{
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

		if (w == -1) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				return -1;
			if (wait_fd(fd, POLLOUT, until) == -1)
				return -1;
			continue;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Bytes received after the end of an answer, for the next one. */
static char	carry[65536];
static size_t	ncarry;

/*
 * Send one line (linelen bytes, no LF) and print its answer. Returns 0
 * (answer ok), 1 (answer is an error) or 2 (trouble, message on stderr).
 */
static int
ask(int fd, const char *line, size_t linelen)
{
	double	 until = now_s() + deadline_s;
	char	*ans = NULL, *end;
	size_t	 len = 0, cap = 0;
	int	 rc;

	if (send_all(fd, line, linelen, until) == -1 ||
	    send_all(fd, "\n", 1, until) == -1) {
		fprintf(stderr, "shoalctl: cannot send: %s\n", strerror(errno));
		return EXIT_TROUBLE;
	}
	for (;;) {
		ssize_t n;

		if (cap - len < sizeof(carry)) {
			char *nb = realloc(ans, cap + sizeof(carry) * 2);

			if (nb == NULL) {
				fprintf(stderr, "shoalctl: out of memory\n");
				free(ans);
				return EXIT_TROUBLE;
			}
			ans = nb;
			cap += sizeof(carry) * 2;
		}
		if (ncarry > 0) {
			memcpy(ans + len, carry, ncarry);
			len += ncarry;
			ncarry = 0;
		} else {
			n = recv(fd, ans + len, cap - len - 1, 0);
			if (n == -1 && (errno == EAGAIN || errno == EINTR ||
			    errno == EWOULDBLOCK)) {
				if (wait_fd(fd, POLLIN, until) == -1) {
					fprintf(stderr, "shoalctl: no answer: "
					    "%s\n", strerror(errno));
					free(ans);
					return EXIT_TROUBLE;
				}
				continue;
			}
			if (n <= 0) {
				if (len > 0)
					fwrite(ans, 1, len, stdout);
				fprintf(stderr, "shoalctl: connection closed "
				    "before the end of the answer%s%s\n",
				    n == -1 ? ": " : "",
				    n == -1 ? strerror(errno) : "");
				free(ans);
				return EXIT_TROUBLE;
			}
			len += (size_t)n;
		}
		ans[len] = '\0';
		/* An answer is never empty and holds no empty line inside:
		 * the first "\n\n" ends it. */
		if ((end = strstr(ans, "\n\n")) != NULL)
			break;
	}
	end += 2;
	ncarry = len - (size_t)(end - ans);
	if (ncarry > sizeof(carry))
		ncarry = sizeof(carry);	/* cannot happen: one line asked */
	memcpy(carry, end, ncarry);
	rc = strncmp(ans, "error:", 6) == 0 ? EXIT_ANSWER_ERROR : 0;
	/* A line of one blank stands for an empty line (which would end
	 * the answer on the wire): `report`'s Markdown paragraphs. */
	for (char *l = ans; l < end - 1; ) {
		char *nl = memchr(l, '\n', (size_t)(end - 1 - l));
		size_t n = nl != NULL ? (size_t)(nl - l) + 1 :
		    (size_t)(end - 1 - l);

		if (n == 2 && l[0] == ' ' && l[1] == '\n')
			fputc('\n', stdout);
		else
			fwrite(l, 1, n, stdout);
		l += n;
	}
	fflush(stdout);
	free(ans);
	return rc;
}

/* Commands from stdin, one per line. */
static int
ask_stdin(int fd)
{
	char	*line = NULL;
	size_t	 cap = 0;
	ssize_t	 n;
	int	 worst = 0, rc;

	while ((n = getline(&line, &cap, stdin)) != -1) {
		while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
			line[--n] = '\0';
		if (strspn(line, " \t") == (size_t)n || line[strspn(line,
		    " \t")] == '#')
			continue;
		rc = ask(fd, line, (size_t)n);
		if (rc > worst)
			worst = rc;
		if (rc == EXIT_TROUBLE)
			break;
	}
	free(line);
	return worst;
}

int
main(int argc, char *argv[])
{
	static const struct option longopts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "timeout", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	char		 defpath[108], *line, *endp;
	const char	*target = NULL;
	size_t		 len = 0;
	int		 ch, fd, rc;

	while ((ch = getopt_long(argc, argv, "+s:t:hV", longopts, NULL))
	    != -1) {
		switch (ch) {
		case 's':
			target = optarg;
			break;
		case 't':
			errno = 0;
			deadline_s = strtod(optarg, &endp);
			if (errno != 0 || *endp != '\0' || endp == optarg ||
			    !(deadline_s > 0 && deadline_s <= 86400)) {
				fprintf(stderr, "shoalctl: bad timeout '%s': "
				    "expected seconds (0 < t <= 86400)\n",
				    optarg);
				return EXIT_TROUBLE;
			}
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("shoalctl %s\n", SHOAL_VERSION);
			return 0;
		default:
			usage(stderr);
			return EXIT_TROUBLE;
		}
	}
	argc -= optind;
	argv += optind;
	if (argc == 0 && isatty(STDIN_FILENO)) {
		usage(stderr);
		return EXIT_TROUBLE;
	}
	if (target == NULL) {
		if (admin_default_socket(defpath, sizeof(defpath)) == NULL) {
			fprintf(stderr, "shoalctl: $RUNTIME_DIRECTORY is too "
			    "long for a socket path: use -s\n");
			return EXIT_TROUBLE;
		}
		target = defpath;
	}
	signal(SIGPIPE, SIG_IGN);

	/* Build the line first: a usage error needs no connection. */
	line = NULL;
	if (argc > 0) {
		for (int i = 0; i < argc; i++)
			len += strlen(argv[i]) + 1;
		if (len > ADMIN_LINE_MAX - 1) {
			fprintf(stderr, "shoalctl: command too long (at "
			    "most %d bytes)\n", ADMIN_LINE_MAX - 1);
			return EXIT_TROUBLE;
		}
		if ((line = calloc(1, len + 1)) == NULL) {
			fprintf(stderr, "shoalctl: out of memory\n");
			return EXIT_TROUBLE;
		}
		for (int i = 0; i < argc; i++) {
			if (strchr(argv[i], '\n') != NULL) {
				fprintf(stderr, "shoalctl: a command is one "
				    "line: no newline in arguments\n");
				free(line);
				return EXIT_TROUBLE;
			}
			if (i > 0)
				strcat(line, " ");
			strcat(line, argv[i]);
		}
	}
	if ((fd = open_target(target)) == -1) {
		free(line);
		return EXIT_TROUBLE;
	}
	rc = line != NULL ? ask(fd, line, strlen(line)) : ask_stdin(fd);
	free(line);
	close(fd);
	return rc;
}
