package store

import "testing"

// FuzzDecodeRecord: a corrupt state file must give errors, not panics.
func FuzzDecodeRecord(f *testing.F) {
	f.Add(encodeRecord([]byte("value"), 0))
	f.Add(encodeRecord(nil, 1<<62))
	f.Add([]byte{})
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, rec []byte) {
		v, exp, err := decodeRecord(rec)
		if err != nil {
			return
		}
		if again, exp2, err := decodeRecord(encodeRecord(v, exp)); err != nil || string(again) != string(v) || exp2 != exp {
			t.Fatalf("round trip of %q: %q %d %v", rec, again, exp2, err)
		}
	})
}

// FuzzDecodeOutcome: an idempotency record read back from a state file or
// Redis gives an error or an outcome that encodes to the same text.
func FuzzDecodeOutcome(f *testing.F) {
	fp := Write{Op: OpIncr, Key: "k"}.fingerprint()
	f.Add(encodeOutcome(fp, Result{N: 42}))
	f.Add(encodeOutcome(fp, Result{NotFound: true}))
	f.Add(encodeOutcome(fp, Result{N: -9223372036854775808}))
	f.Add("")
	f.Add(fp + " 1 2")
	f.Add(fp + " +1 0")
	f.Fuzz(func(t *testing.T, rec string) {
		fp, r, err := decodeOutcome(rec)
		if err != nil {
			return
		}
		if _, r2, err := decodeOutcome(encodeOutcome(fp, r)); err != nil || r2 != r {
			t.Fatalf("%q: round trip %+v → %+v, %v", rec, r, r2, err)
		}
	})
}
