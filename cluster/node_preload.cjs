// herd's preload module for Node.js programs under "herd run" (loaded with
// NODE_OPTIONS=--require). It makes an unmodified server.listen(PORT) on
// herd's port serve the socket herd passed as fd 3 instead of opening its
// own, so that every worker shares the primary's socket. With a private
// probe socket (LISTEN_FDNAMES=http:probe, herd run --ready-probe http:/path
// or tcp) an HTTP server also answers on fd 4.
//
// It also gives an HTTP server there a graceful stop when the program has
// none: on herd's stop signal (HERD_STOP_SIGNAL), if no other listener for
// that signal is installed at that moment, the servers on herd's sockets
// stop accepting, answer requests in flight and any further request on an
// open connection with "Connection: close", close connections idle for a
// second, and the process exits (code 0) once they are all closed. A
// program with its own handler for the signal keeps it: the preload then
// does nothing. herd kills the process group after its stop timeout
// whatever happens here. Anything else is left alone.
'use strict';
const net = require('net');

const herdPort = Number(process.env.HERD_PORT);
const names = (process.env.LISTEN_FDNAMES || '').split(':');
const stopSignal = process.env.HERD_STOP_SIGNAL || 'SIGTERM';
// How long a draining server leaves a connection idle between requests
// before closing it: closing an idle keep-alive connection races with a
// request its client may be sending, so the next response says
// "Connection: close" instead, and only silent clients are cut off.
const idleAfterMs = 1000;

// The servers listening on herd's sockets, with their connections (socket
// -> the time it went idle, 0 while it serves a request) and responses in
// flight.
const servers = new Map();
let draining = false;

function track(server) {
  const st = { conns: new Map(), inflight: new Set() };
  servers.set(server, st);
  server.on('connection', (socket) => {
    st.conns.set(socket, Date.now());
    socket.once('close', () => st.conns.delete(socket));
  });
  // First of the request listeners: the app's own run after it.
  server.prependListener('request', (req, res) => {
    const socket = req.socket;
    if (st.conns.has(socket)) st.conns.set(socket, 0);
    if (draining) res.setHeader('Connection', 'close');
    st.inflight.add(res);
    const done = () => {
      st.inflight.delete(res);
      if (st.conns.has(socket)) st.conns.set(socket, Date.now());
    };
    res.once('finish', done);
    res.once('close', done);
  });
  if (servers.size === 1) process.on(stopSignal, onStop);
}

function onStop() {
  // The program's own handler decides, if it has one (checked now, not at
  // startup: it may have been installed after listen).
  if (process.listenerCount(stopSignal) > 1 || draining) return;
  draining = true;
  const start = Date.now();
  let open = servers.size;
  const closed = () => {
    if (--open === 0) process.exit(0);
  };
  for (const [server, st] of servers) {
    for (const res of st.inflight) {
      if (!res.headersSent) res.setHeader('Connection', 'close');
    }
    // net.Server's close: stop accepting and call back once every
    // connection has closed. (http.Server's close would also close idle
    // keep-alive connections at once, racing with a request being sent.)
    net.Server.prototype.close.call(server, closed);
  }
  setInterval(() => {
    const cutoff = Date.now() - idleAfterMs;
    for (const st of servers.values()) {
      for (const [socket, since] of st.conns) {
        if (since !== 0 && Math.max(since, start) <= cutoff) socket.destroy();
      }
    }
  }, 100).unref();
}

// LISTEN_PID names the process the descriptors are for: not a child this
// program starts (it would not have them).
if (herdPort && names[0] === 'http' && process.env.LISTEN_PID === String(process.pid)) {
  const listen = net.Server.prototype.listen;
  net.Server.prototype.listen = function (...args) {
    let port = args[0];
    if (port !== null && typeof port === 'object') port = port.port;
    if (port === undefined || Number(port) !== herdPort) return listen.apply(this, args);
    const cb = typeof args[args.length - 1] === 'function' ? args[args.length - 1] : undefined;
    const isHTTP = this.listeners('request').length > 0;
    if (names[1] === 'probe') {
      if (isHTTP) {
        // A second server with the same request handlers, on the probe socket.
        const probe = new this.constructor();
        for (const h of this.listeners('request')) probe.on('request', h);
        listen.call(probe, { fd: 4 });
        track(probe);
        this.once('close', () => probe.close());
      } else {
        // A plain TCP server: its connection handlers accept on the probe
        // socket too (herd's tcp probe only needs the accept).
        const probe = new net.Server();
        for (const h of this.listeners('connection')) probe.on('connection', h);
        listen.call(probe, { fd: 4 });
        this.once('close', () => probe.close());
      }
    }
    if (isHTTP) track(this);
    return cb ? listen.call(this, { fd: 3 }, cb) : listen.call(this, { fd: 3 });
  };
}
