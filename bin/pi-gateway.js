#!/usr/bin/env node
// pi-gateway: run pi coding-agent sessions behind HTTP. `pi-gateway --help` lists the options;
// the logic lives in lib/cli.js.
import { run } from "../lib/cli.js";

await run();
