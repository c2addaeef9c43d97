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
