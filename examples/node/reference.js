// The reference's server as written: the app on PORT, and nothing else: no
// signal handler, so on SIGTERM Node exits at once, with whatever requests
// are in flight. Under "herd run" herd's preload module gives it a graceful
// stop all the same; under PM2 or Node's cluster module it has none.
import { app } from "./index.js";

const port = process.env.PORT || 3000;
app.listen(port, () => {
  console.log(`Worker ${process.pid} listening on port ${port}`);
});
