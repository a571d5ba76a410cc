/**
 * `deno task start`: parse the flags, build the backend, serve. Nothing
 * clever lives here; see server/start.ts for the assembly.
 */
import { ConfigError, parseConfig, USAGE } from "./config.ts";
import { startFromConfig } from "./server/from-config.ts";

async function main(): Promise<number> {
  let config;
  try {
    config = parseConfig(Deno.args, Deno.env.toObject());
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    console.error(`cbt-gateway: ${e.message}\n\n${USAGE}`);
    return 2;
  }
  if (config.help) {
    console.log(USAGE);
    return 0;
  }
  let running;
  try {
    running = await startFromConfig(config);
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    console.error(`cbt-gateway: ${e.message}`);
    return 2;
  }
  for (const line of running.banner) console.log(line);
  const stop = Promise.withResolvers<void>();
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    Deno.addSignalListener(signal, () => stop.resolve());
  }
  await stop.promise;
  console.log("cbt-gateway: shutting down");
  await running.close();
  return 0;
}

Deno.exit(await main());
