// herd's preload module for Node.js programs under "herd run" (loaded with
// NODE_OPTIONS=--require). It makes an unmodified server.listen(PORT) on
// herd's port serve the socket herd passed as fd 3 instead of opening its
// own, so that every worker shares the primary's socket. With a private
// probe socket (LISTEN_FDNAMES=http:probe, herd run --ready-probe http:/path)
// an HTTP server also answers on fd 4. Anything else is left alone.
'use strict';
const net = require('net');

const herdPort = Number(process.env.HERD_PORT);
const names = (process.env.LISTEN_FDNAMES || '').split(':');
// LISTEN_PID names the process the descriptors are for: not a child this
// program starts (it would not have them).
if (herdPort && names[0] === 'http' && process.env.LISTEN_PID === String(process.pid)) {
  const listen = net.Server.prototype.listen;
  net.Server.prototype.listen = function (...args) {
    let port = args[0];
    if (port !== null && typeof port === 'object') port = port.port;
    if (port === undefined || Number(port) !== herdPort) return listen.apply(this, args);
    const cb = typeof args[args.length - 1] === 'function' ? args[args.length - 1] : undefined;
    if (names[1] === 'probe' && typeof this.listeners === 'function' && this.listeners('request').length > 0) {
      // A second server with the same request handlers, on the probe socket.
      const probe = new this.constructor();
      for (const h of this.listeners('request')) probe.on('request', h);
      listen.call(probe, { fd: 4 });
      this.once('close', () => probe.close());
    }
    return cb ? listen.call(this, { fd: 3 }, cb) : listen.call(this, { fd: 3 });
  };
}
