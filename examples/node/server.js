// One worker: the app on PORT, with a graceful stop. Under "herd run" the
// unmodified app.listen(PORT) serves herd's socket (fd 3) through herd's
// preload module; run alone (node server.js) it opens PORT itself.
import net from "node:net";
import { app } from "./index.js";

const port = Number(process.env.PORT) || 3000;
const server = app.listen(port, () => {
  console.log(`Worker ${process.pid} listening on port ${port}`);
  // PM2's --wait-ready and Node's cluster hear this; under herd run there
  // is no IPC channel and readiness comes from the probe or READY=1.
  if (process.send) process.send("ready");
});

// SIGTERM: stop accepting (what is still queued goes to the other workers),
// answer requests on open connections with "Connection: close", close
// connections idle for a second, and exit once none is left. Node's own
// server.close() would close idle keep-alive connections at once, racing
// with a request a client is sending on one; net.Server's close does not.
function drain() {
  if (app.locals.draining) return;
  app.locals.draining = true;
  net.Server.prototype.close.call(server, () => process.exit(0));
  setInterval(() => server.closeIdleConnections(), 1000).unref();
}
process.on("SIGTERM", drain);
process.on("SIGINT", drain);
