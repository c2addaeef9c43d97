// The reference's Express application: routes only, no process code.
import express from "express";

export const app = express();

// Which worker answered, for load tests (herd loadtest counts by X-Worker-Id).
app.use((req, res, next) => {
  res.set("X-Worker-Id", process.env.HERD_RUN_WORKER || String(process.env.NODE_UNIQUE_ID || ""));
  res.set("X-Worker-Pid", String(process.pid));
  if (app.locals.draining) res.set("Connection", "close");
  next();
});

app.get("/", (req, res) => {
  res.send("Hello World!");
});

app.get("/pid", (req, res) => {
  res.json({ processid: process.pid });
});

app.get("/api/:n", (req, res) => {
  let n = parseInt(req.params.n, 10);
  if (Number.isNaN(n)) return res.status(400).json({ error: "n must be a whole number" });
  if (n > 5000000000) n = 5000000000;
  let count = 0;
  for (let i = 0; i <= n; i++) count += i;
  res.send(`Final count is ${count} ${process.pid}`);
});

app.get("/slow", (req, res) => {
  const ms = parseInt(req.query.ms, 10) || 0;
  console.log(`slow request started: ${ms} ms`);
  setTimeout(() => res.send(`slept ${ms} ms in pid ${process.pid}\n`), ms);
});
