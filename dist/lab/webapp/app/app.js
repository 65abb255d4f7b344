// The web app of the AIT Lab 04 stack (dist/lab/webapp).
//
//   GET /         JSON {hello, ip, host, tag, sessionViews, id}, header
//                 x-backend-ip; counts the views of the session (cookie)
//   POST /delay   {"delay": ms} delays later answers of GET / by ms
//   GET /healthz  "ok", no session: what the health checks ask
//
// Listens on PORT (default 3000); TAG is echoed in every answer. On
// SIGTERM it stops accepting, lets running requests finish and exits 0.
// PROXY_PROTOCOL=1: every connection starts with a PROXY protocol header
// (v1 or v2: shoal's `send_proxy`); its source is the client the answer's
// `client` names (without it: the balancer's address).
'use strict';

const express = require('express');
const session = require('express-session');
const http = require('http');
const net = require('net');
const os = require('os');

const port = Number(process.env.PORT || 3000);
const tag = process.env.TAG || '';
const greetings = ['world', 'shoal', 'heig-vd', 'ait', 'docker', 's6'];
let delay = 0;

// The first IPv4 address that is not loopback (the lab network's).
function localIp() {
  for (const addrs of Object.values(os.networkInterfaces())) {
    for (const a of addrs || []) {
      if (a.family === 'IPv4' && !a.internal) return a.address;
    }
  }
  return '127.0.0.1';
}

const ip = localIp();
const app = express();
app.disable('x-powered-by');

// Before the session middleware: a check creates no session.
app.get('/healthz', (req, res) => {
  res.type('text/plain').send('ok\n');
});

app.use(session({
  secret: process.env.SESSION_SECRET || 'shoal-lab',
  resave: false,
  saveUninitialized: true,
}));
app.use(express.json());

app.get('/', (req, res) => {
  req.session.views = (req.session.views || 0) + 1;
  const answer = () => {
    res.set('x-backend-ip', ip);
    res.json({
      hello: greetings[Math.floor(Math.random() * greetings.length)],
      ip: ip,
      host: os.hostname(),
      tag: tag,
      sessionViews: req.session.views,
      id: req.sessionID,
      client: clientOf(req),
    });
  };
  if (delay > 0) setTimeout(answer, delay);
  else answer();
});

app.post('/delay', (req, res) => {
  const d = Number(req.body && req.body.delay);
  if (!Number.isInteger(d) || d < 0 || d > 600000) {
    res.status(400).json({ error: 'expected {"delay": ms}, 0-600000' });
    return;
  }
  delay = d;
  res.json({ message: `New timeout of ${delay}ms configured.` });
});

// The client: the PROXY header's source, or the connection's peer (an
// IPv4 peer of the dual-stack socket without its ::ffff: prefix).
function clientOf(req) {
  const c = req.socket.proxyClient;
  return c ? c.address : req.socket.remoteAddress.replace(/^::ffff:/, '');
}

// A PROXY header at the start of buf: {len, client} (client null for v1
// UNKNOWN and v2 LOCAL), null while incomplete, false if it is none.
const V2SIG = Buffer.from('0d0a0d0a000d0a515549540a', 'hex');
function parseProxy(buf) {
  if (buf[0] === 0x50) {                                      // 'P': v1
    const k = Math.min(buf.length, 6);
    if (buf.subarray(0, k).toString('latin1') !== 'PROXY '.slice(0, k)) {
      return false;
    }
    const end = buf.indexOf('\r\n');
    if (end < 0) return buf.length < 107 ? null : false;
    const f = buf.subarray(0, end).toString('latin1').split(' ');
    if (f[1] === 'UNKNOWN') return { len: end + 2, client: null };
    if ((f[1] !== 'TCP4' && f[1] !== 'TCP6') || f.length !== 6 ||
        net.isIP(f[2]) === 0) return false;
    return { len: end + 2, client: { address: f[2], port: Number(f[4]) } };
  }
  const n = Math.min(buf.length, 12);
  if (!buf.subarray(0, n).equals(V2SIG.subarray(0, n))) return false;
  if (buf.length < 16) return null;
  const len = 16 + buf.readUInt16BE(14);
  if (buf.length < len) return len <= 4096 ? null : false;
  if ((buf[12] & 0xf) === 0) return { len, client: null };      // LOCAL
  if (buf[13] === 0x11 && len >= 28) {
    return { len, client: { address: Array.from(buf.subarray(16, 20))
      .join('.'), port: buf.readUInt16BE(24) } };
  }
  if (buf[13] === 0x21 && len >= 52) {
    const g = [];
    for (let i = 16; i < 32; i += 2) g.push(buf.readUInt16BE(i).toString(16));
    const address = new URL(`http://[${g.join(':')}]`).hostname;
    return { len, client: { address: address.slice(1, -1),
      port: buf.readUInt16BE(48) } };
  }
  return { len, client: null };
}

// Read a connection's PROXY header, then hand the connection and the
// bytes after the header to the HTTP server.
function withProxyHeader(sock, server) {
  let buf = Buffer.alloc(0);
  const onData = (chunk) => {
    buf = Buffer.concat([buf, chunk]);
    const r = parseProxy(buf);
    if (r === null) return;
    sock.removeListener('data', onData);
    if (r === false) {
      sock.destroy();
      return;
    }
    sock.proxyClient = r.client;
    server.emit('connection', sock);
    if (r.len < buf.length) sock.emit('data', buf.subarray(r.len));
  };
  sock.on('data', onData);
}

const server = http.createServer(app);
const listener = process.env.PROXY_PROTOCOL === '1'
  ? net.createServer((sock) => withProxyHeader(sock, server))
  : server;
listener.listen(port, () => {
  console.log(`webapp: listening on port ${port} (ip ${ip}, host ` +
      `${os.hostname()}, tag '${tag}'` +
      `${listener === server ? '' : ', PROXY protocol'})`);
});

function stop(sig) {
  console.log(`webapp: ${sig}: finishing running requests`);
  if (listener !== server) listener.close();
  server.close(() => process.exit(0));
  server.closeIdleConnections();
  setTimeout(() => process.exit(0), 5000).unref();
}
process.on('SIGTERM', () => stop('SIGTERM'));
process.on('SIGINT', () => stop('SIGINT'));
