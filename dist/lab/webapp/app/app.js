// The web app of the AIT Lab 04 stack (dist/lab/webapp).
//
//   GET /         JSON {hello, ip, host, tag, sessionViews, id}, header
//                 x-backend-ip; counts the views of the session (cookie)
//   POST /delay   {"delay": ms} delays later answers of GET / by ms
//   GET /healthz  "ok", no session: what the health checks ask
//
// Listens on PORT (default 3000); TAG is echoed in every answer. On
// SIGTERM it stops accepting, lets running requests finish and exits 0.
'use strict';

const express = require('express');
const session = require('express-session');
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

const server = app.listen(port, () => {
  console.log(`webapp: listening on port ${port} (ip ${ip}, host ` +
      `${os.hostname()}, tag '${tag}')`);
});

function stop(sig) {
  console.log(`webapp: ${sig}: finishing running requests`);
  server.close(() => process.exit(0));
  server.closeIdleConnections();
  setTimeout(() => process.exit(0), 5000).unref();
}
process.on('SIGTERM', () => stop('SIGTERM'));
process.on('SIGINT', () => stop('SIGINT'));
