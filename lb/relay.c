/*
 * relay.c - moving bytes between the two sides of a session.
 *
 * relay_copy() is written once and called for both directions. Each
 * direction holds at most one batch of bytes in flight: in a buffer taken
 * from the worker's pool only while bytes are in flight (a small one, or a
 * big one while that direction streams, i.e. its last read was a small
 * buffer's worth or more), or, while it streams, in a pipe: splice(2)
 * moves the bytes socket -> pipe -> socket without copying them through
 * user space. Backpressure is relay_update(): a side is read only while
 * the bytes read from it have all been written to its peer, and written
 * only while its peer's bytes wait: bytes in flight simply stop reading,
 * and memory per session is bounded by two buffers (or pipes).
 *
 * Half-close: EOF read from one side becomes a FIN (shutdown SHUT_WR) to
 * the other once its bytes are flushed; the other direction keeps flowing.
 * An error (RST) on either side closes both with an RST.
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>

#include "log.h"
#include "net.h"
#include "relay.h"

#ifndef RELAY_ROUNDS
#define RELAY_ROUNDS	4	/* reads per direction per wake-up */
#endif
#ifndef RELAY_PIPE
#define RELAY_PIPE	BUF_BIG	/* bytes a splice pipe holds */
#endif
#define PIPE_POOL_MAX	64	/* empty pipes a worker keeps for reuse */

/*
 * Pipes for splice(2), pooled per worker thread (thread-local: a session
 * lives on one worker, so no lock). The pool is emptied whenever its
 * worker has no session left, so an idle shoal holds no pipe.
 */
static _Thread_local struct {
	int	 fds[PIPE_POOL_MAX][2];
	int	 n;
} pipes;

static _Atomic bool	relay_splice = true;	/* [global] splice */

void
relay_set_splice(bool on)
{
	atomic_store_explicit(&relay_splice, on, memory_order_relaxed);
}

static bool
splice_enabled(void)
{
	return atomic_load_explicit(&relay_splice, memory_order_relaxed);
}

static void
side_init(struct relay *r, struct relay_side *sd, struct relay_side *peer,
    const struct relay_role *role)
{
	sd->fd = -1;
	sd->pipe[0] = sd->pipe[1] = -1;
	sd->events = 0;
	sd->peer = peer;
	sd->r = r;
	sd->role = role;
	ev_init(&sd->io, relay_io_cb);
	sd->io.data = sd;
}

void
relay_init(struct relay *r, const struct relay_role *cli,
    const struct relay_role *srv)
{
	side_init(r, &r->cli, &r->srv, cli);
	side_init(r, &r->srv, &r->cli, srv);
}

/* An empty pipe into p[2]: from the pool, or new. 0 or -1 (errno). */
static int
pipe_get(int p[2])
{
	if (pipes.n > 0) {
		pipes.n--;
		p[0] = pipes.fds[pipes.n][0];
		p[1] = pipes.fds[pipes.n][1];
		return 0;
	}
	if (pipe2(p, O_NONBLOCK | O_CLOEXEC) == -1)
		return -1;
	/* As much in flight as a big buffer; the default 64 KiB if refused. */
	(void)fcntl(p[1], F_SETPIPE_SZ, RELAY_PIPE);
	return 0;
}

void
relay_side_fini(struct relay_side *sd)
{
	buf_put(sd->r->bufs, sd->buf);
	sd->buf = NULL;
	if (sd->pipe[0] == -1)
		return;
	if (sd->inpipe == 0 && pipes.n < PIPE_POOL_MAX) {
		pipes.fds[pipes.n][0] = sd->pipe[0];
		pipes.fds[pipes.n][1] = sd->pipe[1];
		pipes.n++;
	} else {
		/* Bytes still inside (an aborted session): not reusable. */
		net_close(sd->pipe[0]);
		net_close(sd->pipe[1]);
	}
	sd->pipe[0] = sd->pipe[1] = -1;
	sd->inpipe = 0;
}

void
relay_side_close(struct relay_side *sd, bool rst)
{
	ev_io_stop(sd->r->loop, &sd->io);
	if (sd->ssl != NULL) {
		/* A clean end (a timeout, a relay that ended) tells the peer
		 * with close_notify if it was not told yet; once. */
		ERR_clear_error();
		if (!rst && sd->fd != -1 && SSL_is_init_finished(sd->ssl) &&
		    !(SSL_get_shutdown(sd->ssl) & SSL_SENT_SHUTDOWN))
			(void)SSL_shutdown(sd->ssl);
		SSL_free(sd->ssl);	/* the fd is ours (BIO_NOCLOSE) */
		sd->ssl = NULL;
		ERR_clear_error();
	}
	if (sd->fd != -1) {
		if (rst)
			net_close_rst(sd->fd);
		else
			net_close(sd->fd);
		sd->fd = -1;
	}
	relay_side_fini(sd);
}

void
relay_pipes_release(void)
{
	while (pipes.n > 0) {
		pipes.n--;
		net_close(pipes.fds[pipes.n][0]);
		net_close(pipes.fds[pipes.n][1]);
	}
}

/* Read this side with splice? Only while it streams, with a pipe at hand,
 * and neither end speaks TLS (the bytes must pass through OpenSSL). */
static bool
want_splice(struct relay_side *sd)
{
	if (!sd->bulk || sd->nosplice || !splice_enabled() ||
	    sd->ssl != NULL || sd->peer->ssl != NULL)
		return false;
	if (sd->pipe[0] != -1)
		return true;
	/* No pipe (EMFILE...): the buffer path does the job this time. */
	return pipe_get(sd->pipe) == 0;
}

/* Bytes read from sd and not yet written to its peer. */
static size_t
pending(const struct relay_side *sd)
{
	return buf_pending(sd->buf) + sd->inpipe;
}

/* A side failed (reset, broken pipe): its role hears it, then the relay
 * ends with RSTs. */
static void
relay_abort(struct relay *r, struct relay_side *failed)
{
	if (failed->role->failed != NULL)
		failed->role->failed(failed);
	r->close(r, failed->role->term_fail, true);
}

/* n bytes were written to `to`. */
static void
count(struct relay_side *to, size_t n)
{
	to->sent += n;
	if (to->sent_total != NULL)
		atomic_fetch_add_explicit(to->sent_total, n,
		    memory_order_relaxed);
	to->active = ev_now(to->r->loop);
}

/* n bytes (or EOF: 0) were read from `from`. */
static void
heard(struct relay_side *from, size_t n)
{
	if (n > 0 && !from->spoke) {
		from->spoke = true;
		if (from->role->first_read != NULL)
			from->role->first_read(from);
	}
	from->active = ev_now(from->r->loop);
}

/* errno for an SSL error that is not a WANT_*: the peer's reset, or a
 * protocol error. */
static int
ssl_errno(int e)
{
	if (e == SSL_ERROR_SYSCALL && errno != 0 && errno != EAGAIN)
		return errno;
	return e == SSL_ERROR_SYSCALL ? ECONNRESET : EPROTO;
}

/*
 * Read up to cap bytes from sd: > 0 bytes, 0 at its end (FIN, or
 * close_notify), -1 with errno (EAGAIN: nothing now). Through TLS, reads
 * records until the buffer is full or the socket has no more: a wake-up
 * moves a buffer, not a record.
 */
static ssize_t
side_recv(struct relay_side *sd, char *p, size_t cap)
{
	size_t	 got = 0, n;
	int	 e;

	if (sd->ssl == NULL)
		return recv(sd->fd, p, cap, 0);
	sd->ssl_more = false;
	sd->rd_wants_wr = false;
	while (got < cap) {
		ERR_clear_error();
		errno = 0;
		if (SSL_read_ex(sd->ssl, p + got, cap - got, &n) == 1) {
			got += n;
			continue;
		}
		e = SSL_get_error(sd->ssl, 0);
		if (got > 0) {
			/* The rest next time: its end (close_notify), an
			 * error or a wanted write is not for epoll to tell. */
			sd->ssl_more = e != SSL_ERROR_WANT_READ;
			return (ssize_t)got;
		}
		switch (e) {
		case SSL_ERROR_WANT_WRITE:
			sd->rd_wants_wr = true;
			/* FALLTHROUGH */
		case SSL_ERROR_WANT_READ:
			errno = EAGAIN;
			return -1;
		case SSL_ERROR_ZERO_RETURN:
			return 0;
		default:
			errno = ssl_errno(e);
			return -1;
		}
	}
	sd->ssl_more = true;
	return (ssize_t)got;
}

/* Write up to len bytes to sd: how many went, or -1 with errno (EAGAIN:
 * not now). Through TLS, a retry after EAGAIN offers the same bytes. */
static ssize_t
side_send(struct relay_side *sd, const char *p, size_t len)
{
	size_t	 n;
	int	 e;

	if (sd->ssl == NULL)
		return send(sd->fd, p, len, MSG_NOSIGNAL);
	sd->wr_wants_rd = false;
	ERR_clear_error();
	errno = 0;
	if (SSL_write_ex(sd->ssl, p, len, &n) == 1)
		return (ssize_t)n;
	switch ((e = SSL_get_error(sd->ssl, 0))) {
	case SSL_ERROR_WANT_READ:
		sd->wr_wants_rd = true;
		/* FALLTHROUGH */
	case SSL_ERROR_WANT_WRITE:
		errno = EAGAIN;
		return -1;
	default:
		errno = e == SSL_ERROR_SYSCALL && errno == 0 ? EPIPE :
		    ssl_errno(e);
		return -1;
	}
}

/* Half-close towards sd: close_notify through TLS, then a FIN (unless
 * sd has ended and been flushed too: close() sends it next). 0, or -1
 * (errno). A close_notify that cannot go now is retried when sd is
 * writable. */
static int
side_shutdown(struct relay_side *sd)
{
	int	 e;

	sd->shut_pending = false;
	if (sd->ssl != NULL) {
		ERR_clear_error();
		errno = 0;
		if (SSL_shutdown(sd->ssl) < 0) {
			e = SSL_get_error(sd->ssl, -1);
			if (e == SSL_ERROR_WANT_WRITE ||
			    e == SSL_ERROR_WANT_READ) {
				sd->shut_pending = true;
				return 0;
			}
			errno = ssl_errno(e);
			return -1;
		}
		if (sd->rd_eof && pending(sd) == 0)
			return 0;
	}
	if (shutdown(sd->fd, SHUT_WR) == -1 && errno != ENOTCONN)
		return -1;
	return 0;
}

/*
 * Move bytes from `from` to its peer until the peer would block, `from`
 * has nothing more, or the round budget is spent. The bytes in flight sit
 * in a buffer (recv/send) or, while `from` streams, in a pipe (splice):
 * the same loop either way. `notified`: epoll said `from` is readable; if
 * not, and its last read drained it, it is not read now (that read would
 * nearly always cost an EAGAIN): relay_update() watches it instead.
 * Returns -1 if the relay was closed, else 0.
 */
static int
relay_copy(struct relay *r, struct relay_side *from, bool notified)
{
	struct relay_side *to = from->peer;
	struct buf	*b;
	size_t		 cap;
	ssize_t		 n;

	for (int round = 0;; round++) {
		/* Flush what we hold. */
		while (pending(from) > 0) {
			if (from->inpipe > 0)
				n = splice(from->pipe[0], NULL, to->fd, NULL,
				    from->inpipe, SPLICE_F_MOVE |
				    SPLICE_F_NONBLOCK);
			else {
				b = from->buf;
				n = side_send(to, b->data + b->off,
				    b->len - b->off);
			}
			if (n > 0) {
				if (from->inpipe > 0)
					from->inpipe -= (size_t)n;
				else
					from->buf->off += (uint32_t)n;
				count(to, (size_t)n);
				continue;
			}
			if (n == -1 && errno == EINTR)
				continue;
			if (n == -1 && (errno == EAGAIN ||
			    errno == EWOULDBLOCK))
				return 0;
			relay_abort(r, to);
			return -1;
		}
		if (from->buf != NULL) {
			buf_put(r->bufs, from->buf);
			from->buf = NULL;
		}
		if (from->rd_eof) {
			/* All bytes before the FIN went out: pass it on. When
			 * `to` has ended and been flushed too, the session
			 * closes on return and close() sends this FIN: save
			 * the syscall (nothing unread is left, so no RST). */
			if (!to->wr_shut) {
				to->wr_shut = true;
				if (to->rd_eof && pending(to) == 0 &&
				    to->ssl == NULL)
					return 0;
				if (side_shutdown(to) == -1) {
					relay_abort(r, to);
					return -1;
				}
			}
			return 0;
		}
		/* Read budget spent (level-triggered: we'll be called again),
		 * or a short read drained the socket: don't pay for EAGAIN. */
		if (round >= RELAY_ROUNDS ||
		    ((round > 0 || !notified) && from->rd_short))
			return 0;
		if (want_splice(from)) {
			/* Streaming: socket -> pipe, no copy to user space. */
			cap = RELAY_PIPE;
			n = splice(from->fd, NULL, from->pipe[1], NULL, cap,
			    SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
			if (n > 0)
				from->inpipe = (size_t)n;
			else if (n == -1 && (errno == EINVAL ||
			    errno == ENOSYS)) {
				/* This socket cannot splice: copy instead. */
				from->nosplice = true;
				round--;
				continue;
			}
		} else {
			/* A side whose last read brought a small buffer's
			 * worth or more is streaming: give it a big buffer
			 * (fewer syscalls per MiB); requests and replies keep
			 * using small ones. */
			b = from->bulk ? buf_get_big(r->bufs) :
			    buf_get(r->bufs);
			if (b == NULL) {
				r->close(r, "RD", true);
				return -1;
			}
			cap = b->cap;
			n = side_recv(from, b->data, cap);
			if (n > 0) {
				b->len = (uint32_t)n;
				from->buf = b;
			} else	/* nothing read: the buffer goes back at once */
				buf_put(r->bufs, b);
		}
		if (n > 0) {
			from->rd_short = (size_t)n < cap && !from->ssl_more;
			from->bulk = (size_t)n >= BUF_SIZE;
			heard(from, (size_t)n);
			continue;
		}
		if (n == 0) {
			from->rd_eof = true;
			heard(from, 0);
			continue;	/* the next turn passes the FIN on */
		}
		if (errno == EINTR) {
			round--;
			continue;
		}
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			from->rd_short = true;
			return 0;
		}
		relay_abort(r, from);
		return -1;
	}
}

int
relay_prefix(struct relay *r, const void *p, size_t len)
{
	struct relay_side	*c = &r->cli;
	struct buf		*b = c->buf;
	size_t			 pending = buf_pending(b);

	if (b == NULL) {
		if ((b = buf_get(r->bufs)) == NULL)
			return -1;
		c->buf = b;
	}
	if (pending + len > b->cap) {
		errno = ENOBUFS;
		return -1;
	}
	if (b->off >= len)
		b->off -= (uint32_t)len;
	else {
		memmove(b->data + len, b->data + b->off, pending);
		b->off = 0;
		b->len = (uint32_t)(pending + len);
	}
	memcpy(b->data + b->off, p, len);
	r->prefix = (uint32_t)len;
	return 0;
}

void
relay_unprefix(struct relay *r)
{
	struct relay_side *c = &r->cli;

	if (r->prefix == 0 || c->buf == NULL)
		return;
	c->buf->off += r->prefix;
	r->prefix = 0;
	if (buf_pending(c->buf) == 0) {
		buf_put(r->bufs, c->buf);
		c->buf = NULL;
	}
}

/* The connect path's one read of the client: into a new buffer, or after
 * our prefix. false if the relay was closed. */
static bool
connect_read_client(struct relay *r)
{
	struct relay_side	*c = &r->cli;
	struct buf		*b = c->buf;
	ssize_t			 n;

	if (b == NULL && (b = buf_get(r->bufs)) == NULL) {
		r->close(r, "RD", true);
		return false;
	}
	do
		n = side_recv(c, b->data + b->len, b->cap - b->len);
	while (n == -1 && errno == EINTR);
	if (n > 0) {
		b->len += (uint32_t)n;
		c->buf = b;
		c->rd_short = (size_t)n < b->cap && !c->ssl_more;
		c->bulk = (size_t)n >= BUF_SIZE;
		heard(c, (size_t)n);
		return true;
	}
	if (c->buf == NULL)
		buf_put(r->bufs, b);
	if (n == 0)
		c->rd_eof = true;
	else if (errno == EAGAIN || errno == EWOULDBLOCK)
		c->rd_short = true;
	else {
		r->close(r, c->role->term_fail, true);
		return false;
	}
	return true;
}

/*
 * While connecting: read what the client has sent already (only if
 * `read_client`: once per session, and only when the buffer holds none of
 * the client's bytes yet: nothing, or our prefix, which then goes first)
 * and send it to the server at once. A
 * send that goes through proves the connection: no SO_ERROR query and no
 * poll round for writability (on loopback the handshake is over when
 * connect() returns). The client's FIN is kept for after the connect.
 * Returns RELAY_SENT, RELAY_WAIT (nothing to send, or the socket is not
 * writable yet), RELAY_CONNFAIL (errno: the connect failed) or
 * RELAY_CLOSED (the client failed: the relay is closed).
 */
int
relay_connect_send(struct relay *r, bool read_client)
{
	struct relay_side *c = &r->cli;
	struct buf	*b;
	ssize_t		 n;

	if (read_client && !c->rd_eof && buf_pending(c->buf) == r->prefix &&
	    !connect_read_client(r))
		return RELAY_CLOSED;
	if (buf_pending(c->buf) == 0)
		return RELAY_WAIT;
	b = c->buf;
	do
		n = send(r->srv.fd, b->data + b->off, b->len - b->off,
		    MSG_NOSIGNAL);
	while (n == -1 && errno == EINTR);
	if (n > 0) {
		r->prefix = 0;
		b->off += (uint32_t)n;
		count(&r->srv, (size_t)n);
		if (buf_pending(b) == 0) {
			buf_put(r->bufs, b);
			c->buf = NULL;
		}
		return RELAY_SENT;
	}
	if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return RELAY_WAIT;
	return RELAY_CONNFAIL;
}

/* Set a side's watcher to the wanted events, touching libev only on change. */
static void
side_want(struct relay_side *sd, int events)
{
	if (sd->events == events)
		return;
	ev_io_stop(sd->r->loop, &sd->io);
	sd->events = events;
	if (events != 0) {
		ev_io_set(&sd->io, sd->fd, events);
		ev_io_start(sd->r->loop, &sd->io);
	}
}

/*
 * The one place interest is decided: read a side while nothing read from
 * it waits and it has not ended; write a side while its peer's bytes wait.
 */
static void
relay_update(struct relay *r)
{
	struct relay_side *sides[2] = { &r->cli, &r->srv };

	for (int i = 0; i < 2; i++) {
		struct relay_side	*sd = sides[i];
		int			 ev = 0;

		bool			 rd = !sd->rd_eof && pending(sd) == 0;

		if (rd)
			ev |= sd->rd_wants_wr ? EV_READ | EV_WRITE : EV_READ;
		if (pending(sd->peer) > 0)
			ev |= sd->wr_wants_rd ? EV_WRITE | EV_READ : EV_WRITE;
		if (sd->shut_pending)
			ev |= EV_WRITE;
		side_want(sd, ev);
		/* Records OpenSSL read already are no news to epoll. */
		if (rd && sd->ssl_more)
			ev_feed_event(r->loop, &sd->io, EV_READ);
	}
}

void
relay_start(struct relay *r)
{
	/* Bytes OpenSSL read ahead during a handshake are no news to
	 * epoll: read them first. */
	if (r->cli.ssl != NULL && SSL_has_pending(r->cli.ssl))
		r->cli.ssl_more = true;
	if (r->srv.ssl != NULL && SSL_has_pending(r->srv.ssl))
		r->srv.ssl_more = true;
	ev_io_stop(r->loop, &r->srv.io);
	ev_set_cb(&r->srv.io, relay_io_cb);
	r->srv.events = 0;
	relay_io_cb(r->loop, &r->cli.io, EV_CUSTOM);
}

void
relay_io_cb(struct ev_loop *loop, ev_io *io, int revents)
{
	struct relay_side	*sd = io->data;
	struct relay		*r = sd->r;

	(void)loop;
	if (revents & EV_CUSTOM) {
		/* Just connected: pass on what the client sent meanwhile
		 * (or its FIN); its socket is read now only if it was not
		 * tried while connecting. A server that speaks first is read
		 * when epoll says so. */
		if (relay_copy(r, &r->cli, false) == -1)
			return;
	} else {
		if ((revents & EV_WRITE) &&
		    relay_copy(r, sd->peer, false) == -1)
			return;
		/* TLS: a read that waited for writable, a write that waited
		 * for readable, a close_notify that did not fit. */
		if ((revents & EV_WRITE) && sd->rd_wants_wr &&
		    relay_copy(r, sd, true) == -1)
			return;
		if ((revents & EV_WRITE) && sd->shut_pending &&
		    side_shutdown(sd) == -1) {
			relay_abort(r, sd);
			return;
		}
		if ((revents & EV_READ) && sd->wr_wants_rd &&
		    relay_copy(r, sd->peer, false) == -1)
			return;
		if ((revents & EV_READ) && relay_copy(r, sd, true) == -1)
			return;
	}
	/* Both directions ended and flushed: a clean close. */
	if (r->cli.rd_eof && r->srv.rd_eof && pending(&r->cli) == 0 &&
	    pending(&r->srv) == 0) {
		if (r->cli.role->ended != NULL)
			r->cli.role->ended(&r->cli);
		if (r->srv.role->ended != NULL)
			r->srv.role->ended(&r->srv);
		r->close(r, "--", false);
		return;
	}
	relay_update(r);
}
