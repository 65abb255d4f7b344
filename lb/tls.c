/*
 * tls.c - building, publishing and retiring the TLS contexts of
 * frontends and backends; ticket key rotation; handshake accounting
 * (see tls.h).
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>

#include "log.h"
#include "server.h"
#include "tls.h"
#include "tlsctx.h"

static struct tlsctx_keys	*keys;		/* the process's ticket keys */
static struct ev_loop		*tloop;
static ev_timer			 rotate_timer;
static uint32_t			 rotate_ms;
static _Atomic bool		 ktls_on = true;
static uint64_t			 be_gen;	/* control loop only */

/* Origination resumption: SSL ex_data is the server, SSL_CTX ex_data the
 * tls_be's generation; a server's cached session is guarded by one of a
 * few locks. */
#define SESS_LOCKS	32
static pthread_mutex_t		 sess_locks[SESS_LOCKS] = {
	[0 ... SESS_LOCKS - 1] = PTHREAD_MUTEX_INITIALIZER
};
static int			 srv_index = -1, be_index = -1;
static pthread_once_t		 index_once = PTHREAD_ONCE_INIT;

static void
index_init(void)
{
	srv_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
	be_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

static pthread_mutex_t *
sess_lock(const struct server *srv)
{
	return &sess_locks[((uintptr_t)srv >> 6) % SESS_LOCKS];
}

/* OpenSSL has a new session from a server: keep it for the next
 * connect (1: we took the reference). */
static int
new_session_cb(SSL *ssl, SSL_SESSION *sess)
{
	struct server	*srv = SSL_get_ex_data(ssl, srv_index);
	/* The generation, not the tls_be: a retired one may be gone while
	   its sessions run. */
	uint64_t	 gen = (uintptr_t)SSL_CTX_get_ex_data(
			    SSL_get_SSL_CTX(ssl), be_index);
	SSL_SESSION	*old;

	if (srv == NULL || gen == 0 || !SSL_SESSION_is_resumable(sess))
		return 0;
	pthread_mutex_lock(sess_lock(srv));
	old = srv->tls_sess;
	srv->tls_sess = sess;
	srv->tls_sess_gen = gen;
	pthread_mutex_unlock(sess_lock(srv));
	SSL_SESSION_free(old);
	return 1;
}

void
tls_be_ssl_prepare(const struct tls_be *t, SSL *ssl, struct server *srv)
{
	SSL_SESSION	*sess = NULL;

	(void)SSL_set_ex_data(ssl, srv_index, srv);
	pthread_mutex_lock(sess_lock(srv));
	if (srv->tls_sess != NULL && srv->tls_sess_gen == t->gen &&
	    SSL_SESSION_up_ref(srv->tls_sess) == 1)
		sess = srv->tls_sess;
	pthread_mutex_unlock(sess_lock(srv));
	if (sess != NULL) {
		(void)SSL_set_session(ssl, sess);
		SSL_SESSION_free(sess);
	}
}

static const char *const fail_names[TLS_FAIL_MAX] = {
	[TLS_FAIL_TIMEOUT] = "timeout",
	[TLS_FAIL_CLOSED] = "closed",
	[TLS_FAIL_NOT_TLS] = "not_tls",
	[TLS_FAIL_VERSION] = "version",
	[TLS_FAIL_CIPHER] = "cipher",
	[TLS_FAIL_ALERT] = "alert",
	[TLS_FAIL_VERIFY] = "verify",
	[TLS_FAIL_OTHER] = "other",
};

const char *
tls_fail_name(enum tls_fail f)
{
	return f < TLS_FAIL_MAX ? fail_names[f] : "other";
}

/* Whether the kernel has the `tls` upper layer (loading it if it is a
 * module): asking for it on a socket that is not connected fails with
 * ENOENT when there is none, ENOTCONN when there is. Asked once: without
 * it, OpenSSL would try (and fail) twice per session. */
static bool
ktls_available(void)
{
	static int	 known = -1;
	int		 fd;

	if (known != -1)
		return known;
	if ((fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1)
		return false;
	known = setsockopt(fd, IPPROTO_TCP, TCP_ULP, "tls", 3) == 0 ||
	    errno != ENOENT;
	close(fd);
	if (!known)
		log_info("tls: the kernel has no TLS module (kTLS): records "
		    "are encrypted in OpenSSL");
	return known;
}

void
tls_set_ktls(bool on)
{
	atomic_store(&ktls_on, on && ktls_available());
}

/* The line a file error belongs to: the cert line naming the file in
 * err, else the fallback. */
static int
cert_line(const struct conf_frontend *cf, const char *err, int fallback)
{
	for (size_t i = 0; i < cf->ncerts; i++) {
		size_t n = strlen(cf->certs[i].path);

		if (strncmp(err, cf->certs[i].path, n) == 0 && err[n] == ':')
			return cf->certs[i].line;
	}
	return fallback;
}

int
tls_fe_new(const struct conf *conf, const struct conf_frontend *cf,
    struct tls_fe **out, char err[CONF_ERR_MAX])
{
	const char		*files[64];
	struct tlsctx_server_conf sc;
	struct tls_fe		*t;
	char			 why[TLSCTX_ERR_MAX];

	*out = NULL;
	if (!cf->tls)
		return 0;
	if (cf->ncerts > sizeof(files) / sizeof(files[0])) {
		snprintf(err, CONF_ERR_MAX, "%s:%d: frontend %s: at most %zu "
		    "cert files", conf->file, cf->certs[64].line, cf->name,
		    sizeof(files) / sizeof(files[0]));
		return -1;
	}
	for (size_t i = 0; i < cf->ncerts; i++)
		files[i] = cf->certs[i].path;
	memset(&sc, 0, sizeof(sc));
	sc.certs = files;
	sc.ncerts = cf->ncerts;
	sc.min_version = cf->tls_min == TLS_MIN_13 ? TLS1_3_VERSION :
	    TLS1_2_VERSION;
	sc.alpn = cf->alpn[0] != '\0' ? cf->alpn : NULL;
	sc.keys = cf->tls_tickets ? keys : NULL;
	sc.ktls = atomic_load(&ktls_on);
	if ((t = calloc(1, sizeof(*t))) == NULL) {
		snprintf(err, CONF_ERR_MAX, "out of memory");
		return -1;
	}
	why[0] = '\0';
	if ((t->srv = tlsctx_server_new(&sc, why, sizeof(why))) == NULL) {
		snprintf(err, CONF_ERR_MAX, "%s:%d: frontend %s: %.400s",
		    conf->file, cert_line(cf, why, cf->line), cf->name, why);
		free(t);
		return -1;
	}
	t->ctx = tlsctx_server_ctx(t->srv);
	t->timeout_handshake_ms = cf->timeout_handshake_ms;
	*out = t;
	return 0;
}

void
tls_fe_free(struct tls_fe *t)
{
	if (t == NULL)
		return;
	tlsctx_server_free(t->srv);	/* sessions keep theirs */
	free(t);
}

static void
fe_free_cb(void *arg)
{
	tls_fe_free(arg);
}

void
tls_fe_retire(struct tls_fe *t)
{
	if (t != NULL && qsbr_defer(fe_free_cb, NULL, t) == -1)
		log_warnx("tls: out of memory retiring a context (kept)");
}

/* The line of the key whose file err names (tls_cert, tls_verify), else
 * of tls = yes. */
static int
be_line(const struct conf_backend *cb, const char *err)
{
	size_t n = strlen(cb->tls_cert);

	if (n > 0 && strncmp(err, cb->tls_cert, n) == 0 && err[n] == ':')
		return cb->tls_cert_line;
	n = strlen(cb->tls_verify);
	if (strncmp(err, cb->tls_verify, n) == 0 && err[n] == ':')
		return cb->tls_verify_line;
	return cb->tls_line;
}

int
tls_be_new(const struct conf *conf, const struct conf_backend *cb,
    struct tls_be **out, char err[CONF_ERR_MAX])
{
	struct tlsctx_client_conf cc;
	struct tls_be		*t;
	char			 why[TLSCTX_ERR_MAX];

	*out = NULL;
	if (!cb->tls)
		return 0;
	memset(&cc, 0, sizeof(cc));
	cc.verify = strcmp(cb->tls_verify, "none") == 0 ? NULL :
	    cb->tls_verify;
	cc.cert = cb->tls_cert[0] != '\0' ? cb->tls_cert : NULL;
	cc.min_version = TLS1_2_VERSION;
	cc.alpn = cb->tls_alpn[0] != '\0' ? cb->tls_alpn : NULL;
	cc.ktls = atomic_load(&ktls_on);
	if ((t = calloc(1, sizeof(*t))) == NULL) {
		snprintf(err, CONF_ERR_MAX, "out of memory");
		return -1;
	}
	why[0] = '\0';
	if ((t->ctx = tlsctx_client_new(&cc, why, sizeof(why))) == NULL) {
		snprintf(err, CONF_ERR_MAX, "%s:%d: backend %s: %.400s",
		    conf->file, be_line(cb, why), cb->name, why);
		free(t);
		return -1;
	}
	snprintf(t->sni, sizeof(t->sni), "%s", cb->tls_sni);
	pthread_once(&index_once, index_init);
	t->gen = ++be_gen;
	(void)SSL_CTX_set_ex_data(t->ctx, be_index, (void *)(uintptr_t)t->gen);
	SSL_CTX_set_session_cache_mode(t->ctx, SSL_SESS_CACHE_CLIENT |
	    SSL_SESS_CACHE_NO_INTERNAL_STORE);
	SSL_CTX_sess_set_new_cb(t->ctx, new_session_cb);
	*out = t;
	return 0;
}

void
tls_be_free(struct tls_be *t)
{
	if (t == NULL)
		return;
	SSL_CTX_free(t->ctx);
	free(t);
}

static void
be_free_cb(void *arg)
{
	tls_be_free(arg);
}

void
tls_be_retire(struct tls_be *t)
{
	if (t != NULL && qsbr_defer(be_free_cb, NULL, t) == -1)
		log_warnx("tls: out of memory retiring a context (kept)");
}

int
tls_check_conf(const struct conf *conf, char err[CONF_ERR_MAX])
{
	struct tls_fe	*f;
	struct tls_be	*b;

	for (size_t i = 0; i < conf->nfrontends; i++) {
		if (tls_fe_new(conf, &conf->frontends[i], &f, err) == -1)
			return -1;
		tls_fe_free(f);
	}
	for (size_t i = 0; i < conf->nbackends; i++) {
		if (tls_be_new(conf, &conf->backends[i], &b, err) == -1)
			return -1;
		tls_be_free(b);
	}
	return 0;
}

static void
rotate_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	(void)loop;
	(void)t;
	(void)revents;
	if (keys != NULL && tlsctx_keys_rotate(keys) == -1)
		log_warnx("tls: ticket keys not rotated (no entropy?)");
	else
		log_debug("tls: ticket keys rotated");
}

void
tls_set_rotate(uint32_t ms)
{
	rotate_ms = ms;
	if (tloop == NULL)
		return;
	ev_timer_stop(tloop, &rotate_timer);
	if (ms == 0)
		return;
	ev_timer_set(&rotate_timer, ms / 1000.0, ms / 1000.0);
	ev_timer_start(tloop, &rotate_timer);
}

void
tls_start(struct ev_loop *loop, uint32_t ms)
{
	if (keys == NULL && (keys = tlsctx_keys_new()) == NULL)
		log_warnx("tls: no ticket keys (out of memory or entropy): "
		    "sessions will not resume");
	tloop = loop;
	ev_init(&rotate_timer, rotate_cb);
	ev_set_priority(&rotate_timer, EV_MINPRI);
	tls_set_rotate(ms);
	ev_unref(loop);		/* the timer alone keeps no loop alive */
}

void
tls_stop(void)
{
	if (tloop != NULL) {
		ev_ref(tloop);
		ev_timer_stop(tloop, &rotate_timer);
		tloop = NULL;
	}
}

void
tls_fini(void)
{
	tlsctx_keys_free(keys);
	keys = NULL;
}

enum tls_fail
tls_fail_reason(SSL *ssl, int sslerr, int err)
{
	unsigned long	 e;
	int		 lib, reason;

	if (sslerr == SSL_ERROR_SYSCALL || sslerr == SSL_ERROR_ZERO_RETURN)
		return TLS_FAIL_CLOSED;
	if (sslerr != SSL_ERROR_SSL)
		return err != 0 ? TLS_FAIL_CLOSED : TLS_FAIL_OTHER;
	if (!SSL_is_server(ssl) && SSL_get_verify_result(ssl) != X509_V_OK)
		return TLS_FAIL_VERIFY;
	e = ERR_peek_last_error();
	lib = ERR_GET_LIB(e);
	reason = ERR_GET_REASON(e);
	if (lib != ERR_LIB_SSL)
		return TLS_FAIL_OTHER;
	switch (reason) {
	case SSL_R_WRONG_VERSION_NUMBER:
	case SSL_R_HTTP_REQUEST:
	case SSL_R_HTTPS_PROXY_REQUEST:
	case SSL_R_UNKNOWN_PROTOCOL:
	case SSL_R_PACKET_LENGTH_TOO_LONG:
	case SSL_R_RECORD_LENGTH_MISMATCH:
	case SSL_R_UNEXPECTED_MESSAGE:
	case SSL_R_UNEXPECTED_RECORD:
	case SSL_R_LENGTH_MISMATCH:
	case SSL_R_BAD_PACKET_LENGTH:
		return TLS_FAIL_NOT_TLS;
	case SSL_R_UNSUPPORTED_PROTOCOL:
	case SSL_R_TLSV1_ALERT_PROTOCOL_VERSION:
	case SSL_R_VERSION_TOO_LOW:
	case SSL_R_VERSION_TOO_HIGH:
	case SSL_R_NO_PROTOCOLS_AVAILABLE:
		return TLS_FAIL_VERSION;
	case SSL_R_NO_SHARED_CIPHER:
	case SSL_R_NO_SHARED_GROUPS:
	case SSL_R_NO_SUITABLE_SIGNATURE_ALGORITHM:
	case SSL_R_NO_CIPHERS_AVAILABLE:
	case SSL_R_SSLV3_ALERT_HANDSHAKE_FAILURE:
		return TLS_FAIL_CIPHER;
	case SSL_R_CERTIFICATE_VERIFY_FAILED:
		return TLS_FAIL_VERIFY;
	}
	/* Alerts the peer sent: SSL_R_SSLV3_ALERT_* and SSL_R_TLSV1_ALERT_*
	   are reason codes 1000 + the alert number. */
	if (reason >= SSL_AD_REASON_OFFSET && reason < SSL_AD_REASON_OFFSET +
	    256)
		return TLS_FAIL_ALERT;
	return TLS_FAIL_OTHER;
}

const char *
tls_version_name(const SSL *ssl)
{
	switch (SSL_version(ssl)) {
	case TLS1_2_VERSION:
		return "1.2";
	case TLS1_3_VERSION:
		return "1.3";
	}
	return SSL_get_version(ssl);
}

void
tls_count_ok(struct tls_counters *c, SSL *ssl)
{
	atomic_fetch_add_explicit(&c->ok, 1, memory_order_relaxed);
	if (SSL_session_reused(ssl))
		atomic_fetch_add_explicit(&c->resumed, 1, memory_order_relaxed);
	if (SSL_version(ssl) == TLS1_3_VERSION)
		atomic_fetch_add_explicit(&c->v13, 1, memory_order_relaxed);
	else if (SSL_version(ssl) == TLS1_2_VERSION)
		atomic_fetch_add_explicit(&c->v12, 1, memory_order_relaxed);
	if (BIO_get_ktls_send(SSL_get_wbio(ssl)))
		atomic_fetch_add_explicit(&c->ktls, 1, memory_order_relaxed);
}
