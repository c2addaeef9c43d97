//go:build !race

package herdtest

const raceEnabled = false
