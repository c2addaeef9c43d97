// The reference's launcher: the same app on every core with Node's cluster
// module (the primary accepts connections and hands them to the workers).
// For comparison with herd run in BENCHMARKS.md: node bin.js
import cluster from "node:cluster";
import os from "node:os";

const workers = Number(process.env.WORKERS) || os.availableParallelism();

if (cluster.isPrimary) {
  console.log(`Primary ${process.pid}: starting ${workers} workers`);
  for (let i = 0; i < workers; i++) cluster.fork();
  cluster.on("exit", (worker, code, signal) => {
    if (!worker.exitedAfterDisconnect) {
      console.log(`Worker ${worker.process.pid} died (${signal || code}); starting another`);
      cluster.fork();
    }
  });
  process.on("SIGTERM", () => cluster.disconnect(() => process.exit(0)));
} else {
  await import("./server.js");
}
