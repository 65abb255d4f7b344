/*
 * ctlsock.c - the control loop's socket server (see ctlsock.h).
 *
 * A client's interest is derived from its state in one place,
 * client_update(): read while input has room, output is below out_high
 * and nothing is finishing; write while output is pending; while
 * lingering, read only to discard. Fds handed to ctlsock_pass() go out
 * with the lines from their offset on, CTLSOCK_FDS_PER_MSG per
 * sendmsg(2), each closed here once sent.
 */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctlsock.h"

#define TRIM_DELAY_S	1.0	/* malloc_trim() this long after a big free */
#define DISCARD_ROUNDS	16	/* recv() calls per wake-up while lingering */
#define OUT_KEEP	(256 * 1024) /* output buffer kept between answers */

static void	client_update(struct ctlsock_client *);

/* ------------------------------------------------------------------ */
/* Giving memory back. */

static ev_timer	trim_timer;

static void
trim_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)malloc_trim(0);
}

void
ctlsock_trim_later(struct ev_loop *loop)
{
	if (ev_is_active(&trim_timer))
		return;
	ev_timer_init(&trim_timer, trim_cb, TRIM_DELAY_S, 0.);
	ev_timer_start(loop, &trim_timer);
}

/* ------------------------------------------------------------------ */
/* Clients. */

static void
reap_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
	struct ctlsock		*cs = w->data;
	struct ctlsock_client	*cl;
	struct ctlsock_listener	*l;

	while ((cl = TAILQ_FIRST(&cs->dead)) != NULL) {
		TAILQ_REMOVE(&cs->dead, cl, entry);
		free(cl);
	}
	while ((l = LIST_FIRST(&cs->dead_listeners)) != NULL) {
		LIST_REMOVE(l, entry);
		free(l);
	}
	ev_prepare_stop(loop, w);
}

/* Close the fds not passed yet and forget them. */
static void
pass_drop(struct ctlsock_client *cl)
{
	while (cl->passed < cl->npass)
		net_close(cl->pass[cl->passed++]);
	free(cl->pass);
	cl->pass = NULL;
	cl->npass = cl->passed = cl->pass_at = 0;
}

int
ctlsock_pass(struct ctlsock_client *cl, int *fds, size_t n)
{
	if (!cl->is_unix) {
		errno = EPERM;
		return -1;
	}
	if (!ctlsock_can_pass(cl)) {
		errno = EBUSY;
		return -1;
	}
	pass_drop(cl);
	if (n == 0) {
		free(fds);
		return 0;
	}
	cl->pass = fds;
	cl->npass = n;
	cl->pass_at = cl->out.len;
	return 0;
}

void
ctlsock_close(struct ctlsock_client *cl, const char *why)
{
	struct ctlsock *cs = cl->cs;

	if (cl->fd == -1)
		return;
	log_debug("%s: client %s closed (%s)", cs->ops->name, cl->peer, why);
	ev_io_stop(cs->loop, &cl->io);
	ev_timer_stop(cs->loop, &cl->timer);
	net_close(cl->fd);
	cl->fd = -1;
	if (cs->ops->close != NULL)
		cs->ops->close(cl);
	sbuf_free(&cl->out);
	pass_drop(cl);
	TAILQ_REMOVE(&cs->clients, cl, entry);
	cs->nclients--;
	TAILQ_INSERT_TAIL(&cs->dead, cl, entry);
	ev_prepare_start(cs->loop, &cs->reap);
}

void
ctlsock_consume(struct ctlsock_client *cl, size_t n)
{
	if (n > cl->inlen)
		n = cl->inlen;
	memmove(cl->in, cl->in + n, cl->inlen - n);
	cl->inlen -= n;
	cl->in[cl->inlen] = '\0';
}

void
ctlsock_deadline(struct ctlsock_client *cl, double s, bool idle)
{
	cl->idle = idle;
	ev_timer_stop(cl->cs->loop, &cl->timer);
	cl->timer.repeat = s;
	ev_timer_again(cl->cs->loop, &cl->timer);
}

/* Bytes moved: an idle timeout starts again. */
static void
client_progress(struct ctlsock_client *cl)
{
	if (cl->idle)
		ev_timer_again(cl->cs->loop, &cl->timer);
}

void
ctlsock_finish(struct ctlsock_client *cl)
{
	cl->finishing = true;
	cl->busy = false;
}

/*
 * Send the line at outoff with up to CTLSOCK_FDS_PER_MSG of the fds not
 * passed yet; as send(2). Once sent, the peer holds them: ours close.
 */
static ssize_t
send_fds(struct ctlsock_client *cl)
{
	union {
		struct cmsghdr	h;
		char		b[CMSG_SPACE(sizeof(int) * CTLSOCK_FDS_PER_MSG)];
	}		 cbuf;
	size_t		 k = cl->npass - cl->passed;
	const char	*p = cl->out.data + cl->outoff;
	const char	*lf = memchr(p, '\n', ctlsock_pending(cl));
	struct iovec	 iov = { (void *)p, lf ? (size_t)(lf - p) + 1 :
			    ctlsock_pending(cl) };
	struct msghdr	 msg;
	struct cmsghdr	*cm;
	ssize_t		 n;

	if (k > CTLSOCK_FDS_PER_MSG)
		k = CTLSOCK_FDS_PER_MSG;
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
	memcpy(CMSG_DATA(cm), cl->pass + cl->passed, sizeof(int) * k);
	if ((n = sendmsg(cl->fd, &msg, MSG_NOSIGNAL)) == -1)
		return -1;
	for (size_t i = 0; i < k; i++)
		net_close(cl->pass[cl->passed++]);
	if (cl->passed == cl->npass)
		pass_drop(cl);
	return n;
}

/* Send what is pending; false if the client was closed. */
static bool
client_flush(struct ctlsock_client *cl)
{
	while (ctlsock_pending(cl) > 0) {
		bool	 fds = cl->passed < cl->npass;
		ssize_t	 n;

		if (fds && cl->outoff >= cl->pass_at)
			n = send_fds(cl);
		else
			n = send(cl->fd, cl->out.data + cl->outoff,
			    (fds ? cl->pass_at : cl->out.len) - cl->outoff,
			    MSG_NOSIGNAL);

		if (n == -1) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return true;
			ctlsock_close(cl, strerror(errno));
			return false;
		}
		cl->outoff += (size_t)n;
		client_progress(cl);
	}
	/* A big answer's buffer is not kept for the next small one. */
	if (cl->out.cap > OUT_KEEP) {
		sbuf_free(&cl->out);
		ctlsock_trim_later(cl->cs->loop);
	} else
		sbuf_reset(&cl->out);
	cl->outoff = 0;
	cl->pass_at = 0;	/* fds still waiting go with the next output */
	return true;
}

/* Discard input after the answer; false if the client was closed. */
static bool
client_discard(struct ctlsock_client *cl)
{
	const struct ctlsock_ops	*ops = cl->cs->ops;
	char				 buf[4096];
	ssize_t				 n;

	for (int i = 0; i < DISCARD_ROUNDS; i++) {
		n = recv(cl->fd, buf, sizeof(buf), 0);
		if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return true;
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0 || (ops->linger_max > 0 &&
		    (cl->drained += (size_t)n) > ops->linger_max)) {
			ctlsock_close(cl, "done");
			return false;
		}
	}
	return true;
}

/* Read what the socket has; false if the client was closed. */
static bool
client_read(struct ctlsock_client *cl)
{
	size_t	room = cl->cs->ops->in_max - cl->inlen;
	ssize_t	n;

	if (cl->lingering)
		return client_discard(cl);
	if (cl->eof || cl->finishing || room == 0)
		return true;
	n = recv(cl->fd, cl->in + cl->inlen, room, 0);
	if (n == -1) {
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
			return true;
		ctlsock_close(cl, strerror(errno));
		return false;
	}
	if (n == 0)
		cl->eof = true;
	else {
		cl->inlen += (size_t)n;
		cl->in[cl->inlen] = '\0';
		client_progress(cl);
	}
	return true;
}

/*
 * Let the service run and send its answers until the output blocks or the
 * service waits for input, then set the interest.
 */
static void
client_step(struct ctlsock_client *cl)
{
	const struct ctlsock_ops *ops = cl->cs->ops;

	for (;;) {
		if (!cl->finishing && ctlsock_pending(cl) < ops->out_high)
			cl->busy = ops->run(cl);
		if (cl->fd == -1)
			return;
		if (sbuf_failed(&cl->out)) {
			log_warnx("%s: client %s: out of memory", ops->name,
			    cl->peer);
			ctlsock_close(cl, "out of memory");
			return;
		}
		if (!client_flush(cl))
			return;
		if (ctlsock_pending(cl) > 0 || cl->finishing || !cl->busy)
			break;
	}
	client_update(cl);
}

/* Derive the watcher's interest from the state; close when done. */
static void
client_update(struct ctlsock_client *cl)
{
	const struct ctlsock_ops	*ops = cl->cs->ops;
	int				 ev = 0;

	if (cl->fd == -1)
		return;
	if (cl->finishing && ctlsock_pending(cl) == 0) {
		if (cl->eof) {
			ctlsock_close(cl, "done");
			return;
		}
		/*
		 * Input may still come. Closing with unread input would
		 * reset the connection and could destroy the answer in
		 * flight: send a FIN and discard what comes for a while.
		 */
		if (!cl->lingering) {
			cl->lingering = true;
			cl->inlen = 0;
			(void)shutdown(cl->fd, SHUT_WR);
			ctlsock_deadline(cl, ops->linger_s, false);
		}
		ev = EV_READ;
	} else if (cl->eof && ctlsock_pending(cl) == 0 && !cl->busy) {
		ctlsock_close(cl, "end of input");
		return;
	} else {
		if (!cl->eof && !cl->finishing && cl->inlen < ops->in_max &&
		    ctlsock_pending(cl) < ops->out_high)
			ev |= EV_READ;
		if (ctlsock_pending(cl) > 0)
			ev |= EV_WRITE;
	}
	if (ev != cl->events) {
		ev_io_stop(cl->cs->loop, &cl->io);
		ev_io_set(&cl->io, cl->fd, ev);
		if (ev != 0)
			ev_io_start(cl->cs->loop, &cl->io);
		cl->events = ev;
	}
}

static void
client_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct ctlsock_client *cl = w->data;

	if ((revents & EV_READ) && !client_read(cl))
		return;
	if (cl->lingering)
		return;
	client_step(cl);
}

static void
client_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct ctlsock_client *cl = w->data;

	ctlsock_close(cl, cl->lingering ? "done" : cl->idle ? "idle timeout" :
	    "deadline");
}

static void
client_new(struct ctlsock *cs, int fd, const char *peer, bool is_unix)
{
	const struct ctlsock_ops	*ops = cs->ops;
	struct ctlsock_client		*cl;

	if ((cl = calloc(1, sizeof(*cl) + ops->in_max + 1)) == NULL) {
		log_warn("%s: client %s", ops->name, peer);
		net_close(fd);
		return;
	}
	cl->cs = cs;
	cl->fd = fd;
	cl->is_unix = is_unix;
	cl->accepted = ev_now(cs->loop);
	snprintf(cl->peer, sizeof(cl->peer), "%s", peer);
	sbuf_init(&cl->out);
	ev_io_init(&cl->io, client_io_cb, fd, EV_READ);
	cl->io.data = cl;
	ev_init(&cl->timer, client_timer_cb);
	cl->timer.data = cl;
	TAILQ_INSERT_TAIL(&cs->clients, cl, entry);
	cs->nclients++;
	cs->accepted++;
	log_debug("%s: client %s connected", ops->name, peer);
	if (ops->open != NULL)
		ops->open(cl);
	if (cl->fd == -1)
		return;
	/* A request that came with the connection is answered now, before
	 * later accepts can take its slot. */
	if (client_read(cl))
		client_step(cl);
}

/* ------------------------------------------------------------------ */
/* Accepting. */

static void
listeners_pause(struct ctlsock *cs)
{
	struct ctlsock_listener *l;

	LIST_FOREACH(l, &cs->listeners, entry)
		ev_io_stop(cs->loop, &l->io);
	ev_timer_stop(cs->loop, &cs->pause);
	ev_timer_set(&cs->pause, CTLSOCK_PAUSE_S, 0.);
	ev_timer_start(cs->loop, &cs->pause);
}

static void
pause_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct ctlsock		*cs = w->data;
	struct ctlsock_listener *l;

	LIST_FOREACH(l, &cs->listeners, entry)
		ev_io_start(loop, &l->io);
}

/* The cap is reached: make room (evict) or refuse fd. True if room. */
static bool
make_room(struct ctlsock *cs, int fd, const char *peer)
{
	const struct ctlsock_ops	*ops = cs->ops;
	struct ctlsock_client		*old;

	if (cs->nclients < ops->clients_max)
		return true;
	if (ops->evict != NULL && (old = ops->evict(cs)) != NULL) {
		cs->evicted++;
		ctlsock_close(old, "evicted for a new client");
		return true;
	}
	cs->refused++;
	if (log_ratelimit(&cs->rl_full, 1))
		log_warnx("%s: refusing client %s: %zu clients connected "
		    "(%lu more suppressed)", ops->name, peer, ops->clients_max,
		    log_ratelimit_suppressed(&cs->rl_full));
	/* Best effort: a fresh socket has room for this. */
	if (ops->busy != NULL && send(fd, ops->busy, strlen(ops->busy),
	    MSG_NOSIGNAL | MSG_DONTWAIT) == -1) {
		/* nothing more to tell it */
	}
	net_close(fd);
	return false;
}

static void
accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct ctlsock_listener	*l = w->data;
	struct ctlsock		*cs = l->cs;
	struct sockaddr_storage	 ss;
	socklen_t		 sl;
	char			 peer[NET_ADDRSTRLEN];
	int			 fd;

	for (int i = 0; i < CTLSOCK_ACCEPT_BATCH; i++) {
		sl = sizeof(ss);
		fd = accept4(l->fd, (struct sockaddr *)&ss, &sl,
		    SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd == -1) {
			if (errno == EINTR || errno == ECONNABORTED ||
			    errno == EPROTO)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			/*
			 * Out of fds, memory or buffers (or an error we do
			 * not expect): the listener stays readable, so
			 * pause instead of spinning, retry from a timer.
			 */
			if (log_ratelimit(&cs->rl_accept, 1))
				log_warn("%s: accept%s (%lu more suppressed)",
				    cs->ops->name, net_local_error(errno) ?
				    " paused for 1s" : " failed, paused",
				    log_ratelimit_suppressed(&cs->rl_accept));
			listeners_pause(cs);
			return;
		}
		if (l->is_unix)
			snprintf(peer, sizeof(peer), "unix");
		else
			net_addr_str((struct sockaddr *)&ss, peer,
			    sizeof(peer));
		if (make_room(cs, fd, peer))
			client_new(cs, fd, peer, l->is_unix);
		if (l->fd == -1)
			return;		/* closed by what the client ran */
	}
}

/* ------------------------------------------------------------------ */
/* Listeners. */

static struct ctlsock_listener *
listener_start(struct ctlsock *cs, int fd)
{
	struct ctlsock_listener *l;

	if ((l = calloc(1, sizeof(*l))) == NULL) {
		net_close(fd);
		return NULL;
	}
	l->cs = cs;
	l->fd = fd;
	ev_io_init(&l->io, accept_cb, fd, EV_READ);
	l->io.data = l;
	LIST_INSERT_HEAD(&cs->listeners, l, entry);
	if (!ev_is_active(&cs->pause))
		ev_io_start(cs->loop, &l->io);
	return l;
}

void
ctlsock_listener_close(struct ctlsock_listener *l)
{
	struct stat st;

	if (l == NULL || l->fd == -1)
		return;
	ev_io_stop(l->cs->loop, &l->io);
	net_close(l->fd);
	l->fd = -1;
	/* Remove the file only if it is still ours (not a newer shoal's). */
	if (l->is_unix && stat(l->path, &st) == 0 && st.st_dev == l->dev &&
	    st.st_ino == l->ino)
		(void)unlink(l->path);
	LIST_REMOVE(l, entry);
	LIST_INSERT_HEAD(&l->cs->dead_listeners, l, entry);
	ev_prepare_start(l->cs->loop, &l->cs->reap);
}

void
ctlsock_stop_listening(struct ctlsock *cs)
{
	while (!LIST_EMPTY(&cs->listeners))
		ctlsock_listener_close(LIST_FIRST(&cs->listeners));
	ev_timer_stop(cs->loop, &cs->pause);
}

struct ctlsock_listener *
ctlsock_listen_tcp(struct ctlsock *cs, const struct conf_addr *a)
{
	struct ctlsock_listener	*l;
	int			 fd;

	if ((fd = net_listen((const struct sockaddr *)&a->ss, a->len, false,
	    cs->ops->backlog)) == -1)
		return NULL;
	if ((l = listener_start(cs, fd)) == NULL)
		return NULL;
	l->addr = *a;
	return l;
}

int
ctlsock_move_tcp(struct ctlsock *cs, struct ctlsock_listener **lp,
    const struct conf_addr *a)
{
	struct ctlsock_listener	*nl;
	struct conf_addr	 old;
	int			 saved;

	if ((nl = ctlsock_listen_tcp(cs, a)) != NULL) {
		ctlsock_listener_close(*lp);
		*lp = nl;
		return 0;
	}
	saved = errno;
	if (saved != EADDRINUSE || *lp == NULL ||
	    net_port((const struct sockaddr *)&(*lp)->addr.ss) !=
	    net_port((const struct sockaddr *)&a->ss)) {
		errno = saved;
		return -1;
	}
	/* Same port, overlapping address: only once the old one is closed.
	 * If the new one still fails, take the old one back. */
	old = (*lp)->addr;
	ctlsock_listener_close(*lp);
	if ((*lp = ctlsock_listen_tcp(cs, a)) != NULL)
		return 0;
	saved = errno;
	*lp = ctlsock_listen_tcp(cs, &old);
	errno = saved;
	return -1;
}

/* Create the parent directory of path (mode 0750) if it is missing. */
static int
make_parent(const char *name, const char *path)
{
	char	dir[CTLSOCK_PATH_MAX];
	char	*slash;

	snprintf(dir, sizeof(dir), "%s", path);
	if ((slash = strrchr(dir, '/')) == NULL || slash == dir)
		return 0;
	*slash = '\0';
	if (mkdir(dir, 0750) == 0) {
		(void)chmod(dir, 0750);		/* whatever the umask */
		log_info("%s: created %s (mode 0750)", name, dir);
		return 0;
	}
	return errno == EEXIST ? 0 : -1;
}

/* A stale socket file at path is removed; a live one is an error. */
static int
unix_clear(const char *name, const struct sockaddr_un *sun, char *why,
    size_t wlen)
{
	struct stat	st;
	int		probe;

	if (lstat(sun->sun_path, &st) == -1)
		return 0;
	if (!S_ISSOCK(st.st_mode)) {
		snprintf(why, wlen, "the file exists and is not a socket");
		errno = EEXIST;
		return -1;
	}
	probe = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (probe == -1) {
		snprintf(why, wlen, "socket: %s", strerror(errno));
		return -1;
	}
	if (connect(probe, (const struct sockaddr *)sun, sizeof(*sun)) == 0 ||
	    errno == EAGAIN) {
		net_close(probe);
		snprintf(why, wlen, "another process answers on it "
		    "(is another shoal running?)");
		errno = EADDRINUSE;
		return -1;
	}
	net_close(probe);
	log_info("%s: replacing the stale socket %s", name, sun->sun_path);
	if (unlink(sun->sun_path) == -1 && errno != ENOENT) {
		snprintf(why, wlen, "cannot remove the stale socket: %s",
		    strerror(errno));
		return -1;
	}
	return 0;
}

struct ctlsock_listener *
ctlsock_listen_unix(struct ctlsock *cs, const char *path, char *why,
    size_t wlen)
{
	const char		*name = cs->ops->name;
	struct ctlsock_listener	*l;
	struct sockaddr_un	 sun;
	struct stat		 st;
	mode_t			 old;
	int			 fd;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sun.sun_path)) {
		snprintf(why, wlen, "path too long (at most %zu bytes)",
		    sizeof(sun.sun_path) - 1);
		errno = ENAMETOOLONG;
		return NULL;
	}
	memcpy(sun.sun_path, path, strlen(path) + 1);
	if (make_parent(name, path) == -1) {
		snprintf(why, wlen, "cannot create its directory: %s",
		    strerror(errno));
		return NULL;
	}
	if (unix_clear(name, &sun, why, wlen) == -1)
		return NULL;
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0)) == -1) {
		snprintf(why, wlen, "socket: %s", strerror(errno));
		return NULL;
	}
	/* umask around bind: the worker threads create no files. */
	old = umask(0177);
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1) {
		umask(old);
		snprintf(why, wlen, "bind: %s", strerror(errno));
		net_close(fd);
		return NULL;
	}
	umask(old);
	if (chmod(path, 0600) == -1 || listen(fd, cs->ops->backlog) == -1 ||
	    stat(path, &st) == -1) {
		snprintf(why, wlen, "%s", strerror(errno));
		(void)unlink(path);
		net_close(fd);
		return NULL;
	}
	if ((l = listener_start(cs, fd)) == NULL) {
		snprintf(why, wlen, "%s", strerror(errno));
		(void)unlink(path);
		return NULL;
	}
	l->is_unix = true;
	snprintf(l->path, sizeof(l->path), "%s", path);
	l->dev = st.st_dev;
	l->ino = st.st_ino;
	return l;
}

/* ------------------------------------------------------------------ */
/* The service. */

void
ctlsock_init(struct ctlsock *cs, struct ev_loop *loop,
    const struct ctlsock_ops *ops)
{
	memset(cs, 0, sizeof(*cs));
	cs->ops = ops;
	cs->loop = loop;
	LIST_INIT(&cs->listeners);
	LIST_INIT(&cs->dead_listeners);
	TAILQ_INIT(&cs->clients);
	TAILQ_INIT(&cs->dead);
	ev_prepare_init(&cs->reap, reap_cb);
	cs->reap.data = cs;
	ev_init(&cs->pause, pause_cb);
	cs->pause.data = cs;
}

void
ctlsock_fini(struct ctlsock *cs)
{
	struct ctlsock_client *cl;

	if (cs->ops == NULL)
		return;
	ctlsock_stop_listening(cs);
	while ((cl = TAILQ_FIRST(&cs->clients)) != NULL)
		ctlsock_close(cl, "shutdown");
	reap_cb(cs->loop, &cs->reap, 0);
	cs->ops = NULL;
}
