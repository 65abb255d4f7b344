/*
 * listen.c - listening sockets: inherited (systemd socket activation, a
 * running shoal's hand-over) or new.
 *
 *   systemd ($LISTEN_FDS) --+
 *                           +--> pool --> listen_obtain(bind, worker)
 *   shoal -x (SCM_RIGHTS) --+               (dups; else net_listen)
 *
 * The pool lives only during start: listen_inherited_done() empties it.
 */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <netinet/in.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "listen.h"
#include "log.h"
#include "net.h"

#define HANDOVER_TIMEOUT_S	5	/* each read/write on the admin socket */
#define HANDOVER_FDS_PER_MSG	200	/* below the kernel's SCM_MAX_FD */
#define HANDOVER_ANSWER_MAX	(256 * 1024)

struct inherited {
	int			 fd;		/* ours; -1 once closed */
	struct sockaddr_storage	 ss;		/* getsockname() */
	socklen_t		 len;
	char			 name[LISTEN_NAME_MAX]; /* systemd's, or "" */
	bool			 from_systemd;
	bool			 named_fe;	/* name is a frontend's name */
	bool			 used;		/* a bind took it */
};

static struct inherited	*pool;
static size_t		 npool;
static int		 handover_fd = -1;	/* admin socket of the old one */

int
listen_env_parse(const char *pid, const char *fds, const char *names,
    pid_t self, char (*names_out)[LISTEN_NAME_MAX], int max, char *err,
    size_t errlen)
{
	char	*end;
	long	 p, n;

	if (fds == NULL)
		return 0;
	/* Meant for another process (a parent that did not clear it): not
	 * ours to touch. */
	if (pid == NULL)
		return 0;
	errno = 0;
	p = strtol(pid, &end, 10);
	if (errno != 0 || end == pid || *end != '\0' || p <= 0) {
		snprintf(err, errlen, "LISTEN_PID=%s: not a process id", pid);
		return -1;
	}
	if (p != (long)self)
		return 0;
	errno = 0;
	n = strtol(fds, &end, 10);
	if (errno != 0 || end == fds || *end != '\0' || n < 0 ||
	    n > LISTEN_FDS_MAX) {
		snprintf(err, errlen, "LISTEN_FDS=%s: not a count from 0 to %d",
		    fds, LISTEN_FDS_MAX);
		return -1;
	}
	for (int i = 0; names_out != NULL && i < max; i++)
		names_out[i][0] = '\0';
	if (names != NULL && names_out != NULL) {
		const char	*s = names;
		int		 i = 0;

		for (;;) {
			const char	*colon = strchr(s, ':');
			size_t		 len = colon ? (size_t)(colon - s) :
					    strlen(s);

			if (i < n && i < max) {
				if (len >= LISTEN_NAME_MAX)
					len = LISTEN_NAME_MAX - 1;
				memcpy(names_out[i], s, len);
				names_out[i][len] = '\0';
			}
			i++;
			if (colon == NULL)
				break;
			s = colon + 1;
		}
		if (i != n) {
			snprintf(err, errlen, "LISTEN_FDNAMES has %d names for "
			    "%ld fds", i, n);
			return -1;
		}
	}
	return (int)n;
}

/* Check that fd is a listening TCP socket; fill e. 0, or -1 with err. */
static int
pool_add(int fd, const char *name, bool from_systemd, char *err,
    size_t errlen)
{
	struct inherited	*e, *np;
	int			 v = 0, flags;
	socklen_t		 vlen = sizeof(v);
	struct stat		 st;

	if (fstat(fd, &st) == -1 || !S_ISSOCK(st.st_mode)) {
		snprintf(err, errlen, "fd %d%s%s%s: not a socket", fd,
		    *name ? " (" : "", name, *name ? ")" : "");
		return -1;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &v, &vlen) == -1 ||
	    v != 1) {
		snprintf(err, errlen, "fd %d%s%s%s: not a listening socket "
		    "(ListenStream= with Accept=no)", fd, *name ? " (" : "",
		    name, *name ? ")" : "");
		return -1;
	}
	vlen = sizeof(v);
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &v, &vlen) == -1 ||
	    v != SOCK_STREAM) {
		snprintf(err, errlen, "fd %d: not a stream socket", fd);
		return -1;
	}
	if ((np = reallocarray(pool, npool + 1, sizeof(*pool))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	pool = np;
	e = &pool[npool];
	memset(e, 0, sizeof(*e));
	e->len = sizeof(e->ss);
	if (getsockname(fd, (struct sockaddr *)&e->ss, &e->len) == -1 ||
	    (e->ss.ss_family != AF_INET && e->ss.ss_family != AF_INET6)) {
		snprintf(err, errlen, "fd %d%s%s%s: not an IPv4 or IPv6 "
		    "socket", fd, *name ? " (" : "", name, *name ? ")" : "");
		return -1;
	}
	/* systemd passes blocking sockets: a blocking accept would stall a
	 * worker that lost the race for a connection. */
	if ((flags = fcntl(fd, F_GETFL)) == -1 ||
	    fcntl(fd, F_SETFL, flags | O_NONBLOCK) == -1 ||
	    fcntl(fd, F_SETFD, FD_CLOEXEC) == -1) {
		snprintf(err, errlen, "fd %d: fcntl: %s", fd, strerror(errno));
		return -1;
	}
	net_nodelay(fd);
	e->fd = fd;
	{
		size_t nl = strnlen(name, sizeof(e->name) - 1);

		memcpy(e->name, name, nl);
		e->name[nl] = '\0';
	}
	e->from_systemd = from_systemd;
	npool++;
	return 0;
}

static bool
is_frontend_name(const struct conf *conf, const char *name)
{
	for (size_t i = 0; i < conf->nfrontends; i++)
		if (strcmp(conf->frontends[i].name, name) == 0)
			return true;
	return false;
}

int
listen_from_systemd(const struct conf *conf, char *err, size_t errlen)
{
	static char	 names[LISTEN_FDS_MAX][LISTEN_NAME_MAX];
	int		 n;

	n = listen_env_parse(getenv("LISTEN_PID"), getenv("LISTEN_FDS"),
	    getenv("LISTEN_FDNAMES"), getpid(), names, LISTEN_FDS_MAX, err,
	    errlen);
	(void)unsetenv("LISTEN_PID");
	(void)unsetenv("LISTEN_FDS");
	(void)unsetenv("LISTEN_FDNAMES");
	if (n <= 0)
		return n;
	for (int i = 0; i < n; i++) {
		size_t k = npool;

		if (pool_add(LISTEN_FDS_START + i, names[i], true, err,
		    errlen) == -1)
			return -1;
		pool[k].named_fe = is_frontend_name(conf, names[i]);
	}
	log_info("systemd passed %d listening socket%s", n, n > 1 ? "s" : "");
	return 0;
}

/* The answer to one admin command, up to its empty line, with any fds
 * passed along it appended to fds. Blocking, with timeouts. */
static int
handover_read(int s, char *buf, size_t cap, int *fds, int *nfds, int maxfds,
    char *err, size_t errlen)
{
	size_t len = 0;

	for (;;) {
		union {
			struct cmsghdr	 h;
			char		 b[CMSG_SPACE(sizeof(int) *
					    HANDOVER_FDS_PER_MSG)];
		}		 cbuf;
		struct iovec	 iov = { buf + len, cap - 1 - len };
		struct msghdr	 msg;
		struct cmsghdr	*cm;
		ssize_t		 n;

		if (len + 1 >= cap) {
			snprintf(err, errlen, "answer too long");
			return -1;
		}
		memset(&msg, 0, sizeof(msg));
		msg.msg_iov = &iov;
		msg.msg_iovlen = 1;
		msg.msg_control = cbuf.b;
		msg.msg_controllen = sizeof(cbuf.b);
		n = recvmsg(s, &msg, MSG_CMSG_CLOEXEC);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			snprintf(err, errlen, "read: %s", strerror(errno));
			return -1;
		}
		for (cm = CMSG_FIRSTHDR(&msg); cm != NULL;
		    cm = CMSG_NXTHDR(&msg, cm)) {
			int	 k;
			int	*p = (int *)(void *)CMSG_DATA(cm);

			if (cm->cmsg_level != SOL_SOCKET ||
			    cm->cmsg_type != SCM_RIGHTS)
				continue;
			k = (int)((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int));
			for (int i = 0; i < k; i++) {
				if (*nfds < maxfds)
					fds[(*nfds)++] = p[i];
				else
					net_close(p[i]);
			}
		}
		if (msg.msg_flags & MSG_CTRUNC) {
			snprintf(err, errlen, "too many sockets at once");
			return -1;
		}
		if (n == 0) {
			snprintf(err, errlen, "connection closed");
			return -1;
		}
		len += (size_t)n;
		buf[len] = '\0';
		if ((len == 1 && buf[0] == '\n') ||
		    (len >= 2 && strcmp(buf + len - 2, "\n\n") == 0))
			return (int)len;
	}
}

static int
handover_send(int s, const char *line, char *err, size_t errlen)
{
	size_t len = strlen(line), off = 0;

	while (off < len) {
		ssize_t n = send(s, line + off, len - off, MSG_NOSIGNAL);

		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			snprintf(err, errlen, "write: %s", strerror(errno));
			return -1;
		}
		off += (size_t)n;
	}
	return 0;
}

int
listen_from_shoal(const char *path, char *err, size_t errlen)
{
	struct sockaddr_un	 sun;
	struct timeval		 tv = { HANDOVER_TIMEOUT_S, 0 };
	char			*ans = NULL, why[256];
	int			*fds = NULL, nfds = 0, s, n, lines = 0;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sun.sun_path)) {
		snprintf(err, errlen, "-x %s: path too long", path);
		return -1;
	}
	memcpy(sun.sun_path, path, strlen(path) + 1);
	if ((s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	(void)setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	(void)setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(s, (struct sockaddr *)&sun, sizeof(sun)) == -1) {
		snprintf(err, errlen, "-x %s: cannot reach the running shoal: "
		    "%s", path, strerror(errno));
		net_close(s);
		return -1;
	}
	ans = malloc(HANDOVER_ANSWER_MAX);
	fds = malloc(LISTEN_FDS_MAX * sizeof(*fds));
	if (ans == NULL || fds == NULL) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	if (handover_send(s, "get listeners\n", why, sizeof(why)) == -1 ||
	    (n = handover_read(s, ans, HANDOVER_ANSWER_MAX, fds, &nfds,
	    LISTEN_FDS_MAX, why, sizeof(why))) == -1) {
		snprintf(err, errlen, "-x %s: %s", path, why);
		goto fail;
	}
	if (strncmp(ans, "error:", 6) == 0) {
		ans[strcspn(ans, "\n")] = '\0';
		snprintf(err, errlen, "-x %s: the running shoal answered: %s",
		    path, ans);
		goto fail;
	}
	for (char *p = ans; (p = strstr(p, "listener ")) != NULL; p++)
		if (p == ans || p[-1] == '\n')
			lines++;
	if (lines != nfds) {
		snprintf(err, errlen, "-x %s: %d sockets announced, %d "
		    "received", path, lines, nfds);
		goto fail;
	}
	for (int i = 0; i < nfds; i++) {
		if (pool_add(fds[i], "", false, why, sizeof(why)) == -1) {
			snprintf(err, errlen, "-x %s: %s", path, why);
			for (int j = i; j < nfds; j++)
				net_close(fds[j]);
			nfds = 0;
			goto fail;
		}
	}
	log_info("took %d listening socket%s from the shoal at %s", nfds,
	    nfds == 1 ? "" : "s", path);
	free(ans);
	free(fds);
	handover_fd = s;
	return 0;
fail:
	for (int i = 0; i < nfds; i++)
		net_close(fds[i]);
	free(ans);
	free(fds);
	net_close(s);
	return -1;
}

int
listen_handover_stop(void)
{
	char	ans[4096], why[256];
	int	nfds = 0, fds[1];

	if (handover_fd == -1)
		return 0;
	if (handover_send(handover_fd, "stop\n", why, sizeof(why)) == -1 ||
	    handover_read(handover_fd, ans, sizeof(ans), fds, &nfds, 1, why,
	    sizeof(why)) == -1) {
		log_warnx("hand-over: cannot stop the previous shoal: %s", why);
		net_close(handover_fd);
		handover_fd = -1;
		return -1;
	}
	for (int i = 0; i < nfds; i++)
		net_close(fds[i]);
	ans[strcspn(ans, "\n")] = '\0';
	log_info("hand-over: previous shoal: %s", ans);
	net_close(handover_fd);
	handover_fd = -1;
	return 0;
}

static bool
pool_matches(const struct inherited *e, const struct conf_addr *a,
    const char *fe)
{
	if (e->fd == -1 || !net_addr_equal((const struct sockaddr *)&e->ss,
	    (const struct sockaddr *)&a->ss))
		return false;
	return !e->named_fe || strcmp(e->name, fe) == 0;
}

int
listen_obtain(const struct conf_addr *a, const char *fe, int w, int nworkers,
    int backlog, int *fds, int max)
{
	size_t	 idx[LISTEN_FDS_MAX];
	int	 k = 0, n = 0, fd;

	for (size_t i = 0; i < npool && k < LISTEN_FDS_MAX; i++)
		if (pool_matches(&pool[i], a, fe))
			idx[k++] = i;
	if (k == 0) {
		if (max < 1) {
			errno = EINVAL;
			return -1;
		}
		fds[0] = net_listen((const struct sockaddr *)&a->ss, a->len,
		    true, backlog);
		return fds[0] == -1 ? -1 : 1;
	}
	/* k sockets, nworkers workers: every socket is served by someone
	 * (a queued connection is never stranded), every worker serves. */
	for (int j = 0; j < k; j++) {
		bool mine = k >= nworkers ? j % nworkers == w : j == w % k;

		if (!mine)
			continue;
		if (n == max) {
			errno = EMFILE;
			goto fail;
		}
		if ((fd = fcntl(pool[idx[j]].fd, F_DUPFD_CLOEXEC, 0)) == -1)
			goto fail;
		pool[idx[j]].used = true;
		fds[n++] = fd;
	}
	return n;
fail:
	while (n > 0)
		net_close(fds[--n]);
	return -1;
}

int
listen_inherited_done(char *err, size_t errlen)
{
	char	abuf[NET_ADDRSTRLEN];
	int	rc = 0;

	for (size_t i = 0; i < npool; i++) {
		struct inherited *e = &pool[i];

		net_addr_str((struct sockaddr *)&e->ss, abuf, sizeof(abuf));
		if (!e->used && e->from_systemd && rc == 0) {
			if (e->named_fe)
				snprintf(err, errlen, "systemd socket %s "
				    "(fd %d, named %s): frontend %s has no "
				    "bind at that address", abuf, e->fd,
				    e->name, e->name);
			else
				snprintf(err, errlen, "systemd socket %s "
				    "(fd %d%s%s): no bind line has that "
				    "address", abuf, e->fd, *e->name ?
				    ", named " : "", e->name);
			rc = -1;
		} else if (!e->used)
			log_info("hand-over: %s is not bound by this "
			    "configuration: closed", abuf);
		net_close(e->fd);
		e->fd = -1;
	}
	free(pool);
	pool = NULL;
	npool = 0;
	return rc;
}

int
listen_export(const struct conf_addr *const *binds, size_t nbinds, int *fds,
    size_t *which, int max)
{
	DIR		*d;
	struct dirent	*de;
	ino_t		 seen[LISTEN_FDS_MAX];
	int		 n = 0, saved;

	if ((d = opendir("/proc/self/fd")) == NULL)
		return -1;
	while ((de = readdir(d)) != NULL && n < max && n < LISTEN_FDS_MAX) {
		struct sockaddr_storage	 ss;
		socklen_t		 len = sizeof(ss), vlen;
		struct stat		 st;
		char			*end;
		long			 fd;
		int			 v, dup;
		bool			 dupe = false;
		size_t			 b;

		fd = strtol(de->d_name, &end, 10);
		if (*end != '\0' || end == de->d_name || fd == dirfd(d))
			continue;
		/* A worker may close it meanwhile: look at a dup, which
		 * cannot change under us. */
		if ((dup = fcntl((int)fd, F_DUPFD_CLOEXEC, 0)) == -1)
			continue;
		vlen = sizeof(v);
		if (fstat(dup, &st) == -1 || !S_ISSOCK(st.st_mode) ||
		    getsockopt(dup, SOL_SOCKET, SO_ACCEPTCONN, &v, &vlen) ==
		    -1 || v != 1 ||
		    getsockname(dup, (struct sockaddr *)&ss, &len) == -1) {
			net_close(dup);
			continue;
		}
		for (int i = 0; i < n; i++)
			if (seen[i] == st.st_ino)
				dupe = true;
		for (b = 0; b < nbinds; b++)
			if (net_addr_equal((struct sockaddr *)&ss,
			    (const struct sockaddr *)&binds[b]->ss))
				break;
		if (dupe || b == nbinds) {
			net_close(dup);
			continue;
		}
		seen[n] = st.st_ino;
		which[n] = b;
		fds[n++] = dup;
	}
	saved = errno;
	closedir(d);
	errno = saved;
	return n;
}
