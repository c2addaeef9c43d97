//go:build race

package loadtest

// raceEnabled: the race detector slows the client and the server about fivefold.
const raceEnabled = true
