import { startPacedRig } from "./paced.ts";
const tmp = await Deno.makeTempDir();
const rig = await startPacedRig(tmp, { tuples: [32768] });
await Deno.writeTextFile(`${tmp}/ca.pem`, rig.frontCaPem);
console.log(
  JSON.stringify({
    http: rig.gateway.httpUrl,
    grpc: rig.gateway.grpcUrl,
    ca: `${tmp}/ca.pem`,
    token: rig.callerToken,
    pid: rig.gateway.pid,
  }),
);
await new Promise((r) => Deno.addSignalListener("SIGTERM", () => r(0)));
await rig.stop();
