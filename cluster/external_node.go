package cluster

import _ "embed"

// nodePreload is the module NODE_OPTIONS=--require loads into a Node.js
// program under Exec, from the primary's private directory.
//
//go:embed node_preload.cjs
var nodePreload []byte

const nodePreloadName = "herd-preload.cjs"

// envStopSignal tells the preload module which signal asks the program to
// stop (Exec.StopSignal, by name, such as SIGTERM): the one on which it
// drains a program that has no handler of its own.
const envStopSignal = "HERD_STOP_SIGNAL"
