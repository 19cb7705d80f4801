// A Durable Task JavaScript SDK worker and client against a perdure node:
// a 3-activity chaining orchestration, run end to end.
//
//   PERDURE_GRPC_ADDR=127.0.0.1:4001 node chaining.js
//
// Prints the orchestration's output and exits 0 when it completed with the expected value.
"use strict";

const {
  TaskHubGrpcClient,
  TaskHubGrpcWorker,
  OrchestrationStatus,
  ConsoleLogger,
  NoOpLogger,
} = require("@microsoft/durabletask-js");

const hostAddress = process.env.PERDURE_GRPC_ADDR || "localhost:4001";
// the SDK logs every work item; PERDURE_SAMPLE_VERBOSE=1 shows it
const logger = process.env.PERDURE_SAMPLE_VERBOSE ? new ConsoleLogger() : new NoOpLogger();

// activities: plain functions of (context, input)
const greet = async (_ctx, name) => `Hello, ${name}!`;
const shout = async (_ctx, text) => text.toUpperCase();
const exclaim = async (_ctx, text) => `${text} <3`;

// the orchestrator: a generator; each `yield` is a durable step
const chaining = async function* (ctx, name) {
  const a = yield ctx.callActivity(greet, name);
  const b = yield ctx.callActivity(shout, a);
  const c = yield ctx.callActivity(exclaim, b);
  return [a, b, c];
};

async function main() {
  const worker = new TaskHubGrpcWorker({ hostAddress, logger });
  worker.addOrchestrator(chaining);
  worker.addActivity(greet);
  worker.addActivity(shout);
  worker.addActivity(exclaim);
  await worker.start();

  const client = new TaskHubGrpcClient({ hostAddress, logger });
  let ok = false;
  try {
    const id = await client.scheduleNewOrchestration(chaining, "perdure");
    console.log(`started ${id}`);
    const state = await client.waitForOrchestrationCompletion(id, true, 60);
    if (!state) throw new Error(`instance ${id} not found`);
    console.log(`status: ${OrchestrationStatus[state.runtimeStatus]}`);
    console.log(`output: ${state.serializedOutput}`);
    const expected = ["Hello, perdure!", "HELLO, PERDURE!", "HELLO, PERDURE! <3"];
    ok =
      state.runtimeStatus === OrchestrationStatus.COMPLETED &&
      JSON.stringify(JSON.parse(state.serializedOutput)) === JSON.stringify(expected);
    if (!ok) {
      console.error(`unexpected result; failure: ${JSON.stringify(state.failureDetails)}`);
    }
  } finally {
    await client.stop();
    await worker.stop();
  }
  return ok;
}

main().then(
  (ok) => process.exit(ok ? 0 : 1),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
