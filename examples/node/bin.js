// The reference's launcher: the same app on every core with Node's cluster
// module (the primary accepts connections and hands them to the workers).
// Kept for the comparison in BENCHMARKS.md: node bin.js
//
// Added to the reference for that comparison: SIGHUP replaces the workers
// one at a time (the new one listening before the old one gets SIGTERM and
// drains, as server.js does), the rolling restart people write on top of
// the cluster module; SIGTERM stops them all.
import cluster from "node:cluster";
import os from "node:os";

const workers = Number(process.env.WORKERS) || os.availableParallelism();

if (cluster.isPrimary) {
  console.log(`Primary ${process.pid}: starting ${workers} workers`);
  let stopping = false;
  const retired = new Set();
  for (let i = 0; i < workers; i++) cluster.fork();
  cluster.on("exit", (worker, code, signal) => {
    if (stopping || retired.delete(worker.id)) return;
    console.log(`Worker ${worker.process.pid} died (${signal || code}); starting another`);
    cluster.fork();
  });
  let reloading = false;
  process.on("SIGHUP", async () => {
    if (reloading) return;
    reloading = true;
    for (const old of Object.values(cluster.workers)) {
      const next = cluster.fork();
      await new Promise((resolve) => next.once("listening", resolve));
      retired.add(old.id);
      old.process.kill("SIGTERM");
    }
    reloading = false;
    console.log("reload complete");
  });
  process.on("SIGTERM", () => {
    stopping = true;
    for (const w of Object.values(cluster.workers)) w.process.kill("SIGTERM");
    cluster.once("exit", function check() {
      if (Object.keys(cluster.workers).length === 0) process.exit(0);
      cluster.once("exit", check);
    });
  });
} else {
  // WORKER_SCRIPT: which server each worker runs (default server.js; the
  // comparison also runs reference.js, the reference as written).
  await import(new URL(process.env.WORKER_SCRIPT || "./server.js", import.meta.url).href);
}
