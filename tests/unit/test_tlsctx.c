/*
 * test_tlsctx.c - TLS contexts: certificates made here (RSA 2048, ECDSA
 * P-256, expired, not yet valid, wildcard, CN only), the all-or-nothing
 * build with an error naming the file, SNI selection (exact before
 * wildcard, first file the default), and real handshakes between a
 * server SSL and a client SSL over a socketpair: the certificate picked
 * by SNI, ALPN negotiated by server preference, tls_min enforced,
 * verification by a CA file, a client certificate, and resumption by a
 * ticket that survives one key rotation but not two.
 */
#include <sys/socket.h>

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "tlsctx.h"
#include "t.h"

static char	 dir[] = "/tmp/shoal-tlsctx-XXXXXX";

static char *
path(const char *name)
{
	static char	 p[8][256];
	static int	 i;

	i = (i + 1) % 8;
	snprintf(p[i], sizeof(p[i]), "%s/%s", dir, name);
	return p[i];
}

static EVP_PKEY *
key(int rsa)
{
	return rsa ? EVP_RSA_gen(2048) : EVP_EC_gen("P-256");
}

/*
 * Write a self-signed certificate (CN cn, SAN DNS names san, "" for
 * none) valid from `from` to `to` seconds from now, its key k (or, with
 * other set, a different key) in one PEM file.
 */
static void
make(const char *file, EVP_PKEY *k, const char *cn, const char *san,
    long from, long to, EVP_PKEY *other)
{
	X509		*x = X509_new();
	X509_NAME	*n = X509_NAME_new();
	X509V3_CTX	 v3;
	X509_EXTENSION	*ext;
	FILE		*f;

	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), (long)random());
	X509_gmtime_adj(X509_getm_notBefore(x), from);
	X509_gmtime_adj(X509_getm_notAfter(x), to);
	X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC,
	    (const unsigned char *)cn, -1, -1, 0);
	X509_set_subject_name(x, n);
	X509_set_issuer_name(x, n);
	X509_set_pubkey(x, k);
	X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
	if (san[0] != '\0') {
		ext = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name,
		    san);
		X509_add_ext(x, ext, -1);
		X509_EXTENSION_free(ext);
	}
	ext = X509V3_EXT_conf_nid(NULL, &v3, NID_basic_constraints,
	    "critical,CA:TRUE");
	X509_add_ext(x, ext, -1);
	X509_EXTENSION_free(ext);
	X509_sign(x, k, EVP_sha256());
	f = fopen(path(file), "w");
	PEM_write_X509(f, x);
	PEM_write_PrivateKey(f, other ? other : k, NULL, NULL, 0, NULL, NULL);
	fclose(f);
	X509_NAME_free(n);
	X509_free(x);
}

struct conn {
	SSL	*srv;
	SSL	*cli;
	int	 fd[2];
};

/* Handshake a client SSL against the server context over a socketpair,
   both non-blocking; 1 when both ends finished. */
static int
handshake_ssl(struct conn *c, SSL *srv, SSL *cli)
{
	int	 i, rs = 0, rc = 0, done_s = 0, done_c = 0;

	socketpair(AF_UNIX, SOCK_STREAM, 0, c->fd);
	fcntl(c->fd[0], F_SETFL, O_NONBLOCK);
	fcntl(c->fd[1], F_SETFL, O_NONBLOCK);
	c->srv = srv;
	c->cli = cli;
	SSL_set_fd(c->srv, c->fd[0]);
	SSL_set_fd(c->cli, c->fd[1]);
	SSL_set_accept_state(c->srv);
	SSL_set_connect_state(c->cli);
	for (i = 0; i < 100 && !(done_s && done_c); i++) {
		if (!done_c) {
			rc = SSL_do_handshake(c->cli);
			done_c = rc == 1;
			if (rc <= 0 && SSL_get_error(c->cli, rc) !=
			    SSL_ERROR_WANT_READ)
				break;
		}
		if (!done_s) {
			rs = SSL_do_handshake(c->srv);
			done_s = rs == 1;
			if (rs <= 0 && SSL_get_error(c->srv, rs) !=
			    SSL_ERROR_WANT_READ)
				break;
		}
	}
	if (getenv("TLSCTX_DEBUG") != NULL)
		ERR_print_errors_fp(stdout);
	ERR_clear_error();
	return done_s && done_c;
}

static int
handshake(struct conn *c, SSL_CTX *sctx, SSL *cli)
{
	return handshake_ssl(c, SSL_new(sctx), cli);
}

/* Server sends a byte, the client reads it (and any ticket with it). */
static int
exchange(struct conn *c)
{
	char	 b = 0;
	int	 i;

	if (SSL_write(c->srv, "x", 1) != 1)
		return 0;
	for (i = 0; i < 10; i++)
		if (SSL_read(c->cli, &b, 1) == 1)
			break;
	return b == 'x';
}

static void
conn_close(struct conn *c)
{
	/* close_notify first: OpenSSL marks a session freed without it
	   not resumable. */
	if (SSL_is_init_finished(c->cli))
		SSL_shutdown(c->cli);
	if (SSL_is_init_finished(c->srv))
		SSL_shutdown(c->srv);
	ERR_clear_error();
	SSL_free(c->srv);
	SSL_free(c->cli);
	close(c->fd[0]);
	close(c->fd[1]);
}

static char *
peer_cn(SSL *ssl)
{
	static char	 cn[256];
	X509		*x = SSL_get1_peer_certificate(ssl);

	cn[0] = '\0';
	if (x != NULL)
		X509_NAME_get_text_by_NID(X509_get_subject_name(x),
		    NID_commonName, cn, sizeof(cn));
	X509_free(x);
	return cn;
}

static SSL_CTX *
client(const char *verify, const char *cert, const char *alpn, int min)
{
	struct tlsctx_client_conf	 cc = { verify, cert, min, alpn, false };
	char				 err[TLSCTX_ERR_MAX];
	SSL_CTX				*ctx = tlsctx_client_new(&cc, err,
					    sizeof(err));

	if (ctx == NULL)
		printf("# client: %s\n", err);
	return ctx;
}

/* Build a server from files; NULL with err when refused. */
static struct tlsctx_server *
server(const char *const *files, size_t n, const char *alpn, int min,
    struct tlsctx_keys *keys, char *err)
{
	struct tlsctx_server_conf	 sc;
	const char			*full[8];
	size_t				 i;

	memset(&sc, 0, sizeof(sc));
	for (i = 0; i < n; i++)
		full[i] = strdup(path(files[i]));
	sc.certs = full;
	sc.ncerts = n;
	sc.min_version = min;
	sc.alpn = alpn;
	sc.keys = keys;
	struct tlsctx_server *s = tlsctx_server_new(&sc, err, TLSCTX_ERR_MAX);
	for (i = 0; i < n; i++)
		free((char *)full[i]);
	return s;
}

static void
test_build(void)
{
	static const char *const bad[][2] = {
		{ "expired.pem", "certificate expired" },
		{ "future.pem", "not valid yet" },
		{ "wrongkey.pem", "does not match" },
		{ "nokey.pem", "no private key" },
		{ "missing.pem", "cannot open" },
		{ "garbage.pem", "no certificate" },
	};
	const char	*files[2];
	char		 err[TLSCTX_ERR_MAX];
	struct tlsctx_server *s;
	size_t		 i;
	FILE		*f;

	f = fopen(path("garbage.pem"), "w");
	fputs("not a PEM file\n", f);
	fclose(f);
	f = fopen(path("nokey.pem"), "w");
	fclose(f);
	{
		/* Only the certificate of rsa.pem. */
		FILE	*in = fopen(path("rsa.pem"), "r");
		X509	*x = PEM_read_X509(in, NULL, NULL, NULL);

		f = fopen(path("nokey.pem"), "w");
		PEM_write_X509(f, x);
		fclose(f);
		fclose(in);
		X509_free(x);
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		files[0] = "rsa.pem";
		files[1] = bad[i][0];
		s = server(files, 2, NULL, 0, NULL, err);
		ok(s == NULL && strstr(err, bad[i][0]) != NULL &&
		    strstr(err, bad[i][1]) != NULL, "refused, all or "
		    "nothing: %s", err);
	}
	files[0] = "rsa.pem";
	s = server(files, 1, "h2,,x", 0, NULL, err);
	ok(s == NULL && strstr(err, "alpn") != NULL, "bad ALPN: %s", err);
	s = server(files, 1, NULL, TLS1_VERSION, NULL, err);
	ok(s == NULL && strstr(err, "tls_min") != NULL, "tls_min 1.0: %s",
	    err);
	files[0] = "cnonly.pem";
	s = server(files, 1, NULL, 0, NULL, err);
	ok(s != NULL && tlsctx_server_nnames(s, 0) == 1 &&
	    strcmp(tlsctx_server_name(s, 0, 0), "cn.only.test") == 0,
	    "no SAN: the CN is the name");
	tlsctx_server_free(s);
}

static void
test_handshakes(void)
{
	static const char *const files[] = { "rsa.pem", "ec.pem", "wild.pem" };
	struct tlsctx_keys	*keys = tlsctx_keys_new();
	struct tlsctx_server	*s;
	struct conn		 c;
	SSL_CTX			*cc, *vc, *c13, *mc;
	SSL_SESSION		*sess;
	const unsigned char	*alpn;
	unsigned int		 alpn_len;
	char			 err[TLSCTX_ERR_MAX];

	s = server(files, 3, "h2, http/1.1", 0, keys, err);
	ok(s != NULL, "three certificates load");
	if (s == NULL) {
		printf("# %s\n", err);
		return;
	}
	is_int(tlsctx_server_pick(s, NULL), 0, "no SNI: default");
	is_int(tlsctx_server_pick(s, "EC.test."), 1, "exact, any case, dot");
	is_int(tlsctx_server_pick(s, "a.wild.test"), 2, "wildcard");
	is_int(tlsctx_server_pick(s, "exact.wild.test"), 1,
	    "an exact name beats a wildcard");
	is_int(tlsctx_server_pick(s, "a.b.wild.test"), 0,
	    "wildcard covers one label only");
	is_int(tlsctx_server_pick(s, "unknown.test"), 0, "unknown: default");

	cc = client(NULL, NULL, "http/1.1,h2", 0);
	ok(handshake(&c, tlsctx_server_ctx(s), tlsctx_client_ssl(cc,
	    "ec.test")), "handshake with SNI ec.test");
	ok(strcmp(peer_cn(c.cli), "ec") == 0, "ECDSA certificate served");
	SSL_get0_alpn_selected(c.cli, &alpn, &alpn_len);
	ok(alpn_len == 2 && memcmp(alpn, "h2", 2) == 0,
	    "ALPN: the server's preference h2");
	is_int(SSL_version(c.cli), TLS1_3_VERSION, "TLS 1.3 by default");
	conn_close(&c);

	ok(handshake(&c, tlsctx_server_ctx(s), tlsctx_client_ssl(cc,
	    "x.wild.test")) && strcmp(peer_cn(c.cli), "wild") == 0,
	    "wildcard certificate by SNI");
	conn_close(&c);
	ok(handshake(&c, tlsctx_server_ctx(s), tlsctx_client_ssl(cc,
	    "nobody.test")) && strcmp(peer_cn(c.cli), "rsa") == 0,
	    "unknown SNI: the default RSA certificate");
	conn_close(&c);
	ok(handshake(&c, tlsctx_server_ctx(s), tlsctx_client_ssl(cc, NULL)) &&
	    strcmp(peer_cn(c.cli), "rsa") == 0, "no SNI: the default");
	conn_close(&c);
	SSL_CTX_free(cc);

	/* ALPN without overlap: no protocol, no failure. */
	cc = client(NULL, NULL, "imap", 0);
	ok(handshake(&c, tlsctx_server_ctx(s), tlsctx_client_ssl(cc,
	    "ec.test")), "ALPN without overlap still connects");
	SSL_get0_alpn_selected(c.cli, &alpn, &alpn_len);
	is_int(alpn_len, 0, "no protocol selected");
	conn_close(&c);
	SSL_CTX_free(cc);

	/* Verification with a CA file: the ECDSA certificate is its own
	   anchor; the name must match. */
	vc = client(path("ec.pem"), NULL, NULL, 0);
	ok(vc != NULL && handshake(&c, tlsctx_server_ctx(s),
	    tlsctx_client_ssl(vc, "ec.test")) &&
	    SSL_get_verify_result(c.cli) == X509_V_OK,
	    "verified against the CA file");
	conn_close(&c);
	ok(!handshake(&c, tlsctx_server_ctx(s), tlsctx_client_ssl(vc,
	    "nobody.test")), "unverifiable certificate refused");
	conn_close(&c);
	SSL_CTX_free(vc);

	/* Client certificate (sent when asked). */
	mc = client(NULL, path("ec.pem"), NULL, 0);
	ok(mc != NULL, "client certificate loads");
	SSL_CTX_free(mc);
	ok(client(NULL, path("wrongkey.pem"), NULL, 0) == NULL,
	    "client certificate with a wrong key refused");

	/* Resumption by ticket, across one rotation, not two. */
	cc = client(NULL, NULL, NULL, 0);
	ok(handshake(&c, tlsctx_server_ctx(s), tlsctx_client_ssl(cc,
	    "ec.test")) && exchange(&c), "first connection");
	sess = SSL_get1_session(c.cli);
	ok(sess != NULL && SSL_SESSION_is_resumable(sess), "ticket received");
	conn_close(&c);
	SSL *cl = tlsctx_client_ssl(cc, "ec.test");
	SSL_set_session(cl, sess);
	ok(handshake(&c, tlsctx_server_ctx(s), cl) && SSL_session_reused(
	    c.srv), "resumed with the ticket");
	conn_close(&c);
	tlsctx_keys_rotate(keys);
	cl = tlsctx_client_ssl(cc, "ec.test");
	SSL_set_session(cl, sess);
	ok(handshake(&c, tlsctx_server_ctx(s), cl) && SSL_session_reused(
	    c.srv), "resumed after one rotation (previous key)");
	conn_close(&c);
	tlsctx_keys_rotate(keys);
	tlsctx_keys_rotate(keys);
	cl = tlsctx_client_ssl(cc, "ec.test");
	SSL_set_session(cl, sess);
	ok(handshake(&c, tlsctx_server_ctx(s), cl) && !SSL_session_reused(
	    c.srv), "full handshake after two rotations");
	conn_close(&c);
	SSL_SESSION_free(sess);

	/* TLS 1.2 ticket too. */
	c13 = client(NULL, NULL, NULL, 0);
	SSL_CTX_set_max_proto_version(c13, TLS1_2_VERSION);
	ok(handshake(&c, tlsctx_server_ctx(s), tlsctx_client_ssl(c13,
	    "rsa.test")) && SSL_version(c.cli) == TLS1_2_VERSION,
	    "TLS 1.2 accepted with tls_min 1.2");
	sess = SSL_get1_session(c.cli);
	conn_close(&c);
	cl = tlsctx_client_ssl(c13, "rsa.test");
	SSL_set_session(cl, sess);
	ok(handshake(&c, tlsctx_server_ctx(s), cl) && SSL_session_reused(
	    c.srv), "TLS 1.2 resumed with its ticket");
	conn_close(&c);
	SSL_SESSION_free(sess);
	tlsctx_server_free(s);

	/* A reload drops the old context while a session still runs on
	   it: the handshake still finds its certificates. */
	s = server(files, 2, NULL, 0, keys, err);
	{
		SSL	*srv = SSL_new(tlsctx_server_ctx(s));

		tlsctx_server_free(s);
		ok(handshake_ssl(&c, srv, tlsctx_client_ssl(cc, "ec.test")) &&
		    strcmp(peer_cn(c.cli), "ec") == 0, "context freed by a "
		    "reload: its running session still handshakes");
		conn_close(&c);
	}

	/* tls_min 1.3 refuses a 1.2-only client. */
	s = server(files, 1, NULL, TLS1_3_VERSION, keys, err);
	ok(s != NULL && !handshake(&c, tlsctx_server_ctx(s),
	    tlsctx_client_ssl(c13, "rsa.test")), "tls_min 1.3 refuses 1.2");
	conn_close(&c);
	tlsctx_server_free(s);
	SSL_CTX_free(c13);
	SSL_CTX_free(cc);
	tlsctx_keys_free(keys);
}

struct worker {
	SSL_CTX		*sctx;		/* shared server context */
	SSL_CTX		*cctx;
	int		 ok;		/* handshakes that resumed */
};

/* A worker thread: connect, take the ticket, resume, 50 times. */
static void *
worker(void *arg)
{
	struct worker	*w = arg;
	struct conn	 c;
	SSL_SESSION	*sess;
	SSL		*cl;
	int		 i;

	for (i = 0; i < 50; i++) {
		if (!handshake(&c, w->sctx, tlsctx_client_ssl(w->cctx,
		    "ec.test")) || !exchange(&c)) {
			conn_close(&c);
			continue;
		}
		sess = SSL_get1_session(c.cli);
		conn_close(&c);
		cl = tlsctx_client_ssl(w->cctx, "ec.test");
		SSL_set_session(cl, sess);
		if (handshake(&c, w->sctx, cl) && SSL_session_reused(c.srv))
			w->ok++;
		conn_close(&c);
		SSL_SESSION_free(sess);
	}
	return NULL;
}

/* Two threads handshake on one server context while the keys rotate;
   a ticket may miss only across two rotations between its issue and
   its use. */
static void
test_threads(void)
{
	static const char *const files[] = { "rsa.pem", "ec.pem" };
	struct tlsctx_keys	*keys = tlsctx_keys_new();
	struct tlsctx_server	*s;
	struct worker		 w[2];
	pthread_t		 t[2];
	char			 err[TLSCTX_ERR_MAX];
	int			 i, rot = 0;

	s = server(files, 2, NULL, 0, keys, err);
	for (i = 0; i < 2; i++) {
		w[i].sctx = tlsctx_server_ctx(s);
		w[i].cctx = client(NULL, NULL, NULL, 0);
		w[i].ok = 0;
		pthread_create(&t[i], NULL, worker, &w[i]);
	}
	for (i = 0; i < 20; i++) {
		usleep(2000);
		rot += tlsctx_keys_rotate(keys) == 0;
	}
	for (i = 0; i < 2; i++) {
		pthread_join(t[i], NULL);
		SSL_CTX_free(w[i].cctx);
	}
	is_int(rot, 20, "keys rotated while workers handshake");
	ok(w[0].ok + w[1].ok >= 80, "%d of 100 resumptions across threads "
	    "and rotations", w[0].ok + w[1].ok);
	tlsctx_server_free(s);
	tlsctx_keys_free(keys);
}

int
main(void)
{
	EVP_PKEY	*rsa, *ec, *ec2;
	char		 cmd[300];

	if (mkdtemp(dir) == NULL)
		return 1;
	rsa = key(1);
	ec = key(0);
	ec2 = key(0);
	make("rsa.pem", rsa, "rsa", "DNS:rsa.test", -60, 86400, NULL);
	make("ec.pem", ec, "ec", "DNS:ec.test,DNS:exact.wild.test", -60, 86400,
	    NULL);
	make("wild.pem", ec2, "wild", "DNS:*.wild.test", -60, 86400, NULL);
	make("cnonly.pem", ec, "cn.only.test", "", -60, 86400, NULL);
	make("expired.pem", ec, "old", "DNS:old.test", -86400 * 2, -86400,
	    NULL);
	make("future.pem", ec, "new", "DNS:new.test", 86400, 86400 * 2, NULL);
	make("wrongkey.pem", ec, "wrong", "DNS:wrong.test", -60, 86400, ec2);
	test_build();
	test_handshakes();
	test_threads();
	EVP_PKEY_free(rsa);
	EVP_PKEY_free(ec);
	EVP_PKEY_free(ec2);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		printf("# could not remove %s\n", dir);
	return done_testing();
}
