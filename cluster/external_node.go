package cluster

import _ "embed"

// nodePreload is the module NODE_OPTIONS=--require loads into a Node.js
// program under Exec, from the primary's private directory.
//
//go:embed node_preload.cjs
var nodePreload []byte

const nodePreloadName = "herd-preload.cjs"
