package main

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// BenchmarkHandle measures the reference's handler in process, without HTTP or TLS: what a
// request costs the Go way before any transport. `make bench` runs it on the server's core with
// GOREF_BODIES naming the request bodies it serves (one AdmissionReview a line), so a slow figure
// over HTTPS can be told apart from a slow handler.
func BenchmarkHandle(b *testing.B) {
	path := os.Getenv("GOREF_BODIES")
	if path == "" {
		b.Fatal("GOREF_BODIES must name a file of AdmissionReview bodies, one a line")
	}
	file, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer file.Close()
	scanner := bufio.NewScanner(file)
	scanner.Buffer(make([]byte, 1<<20), 16<<20)
	var requests []admission.Request
	for scanner.Scan() && len(requests) < 256 {
		var review admissionv1.AdmissionReview
		if err := json.Unmarshal(scanner.Bytes(), &review); err != nil || review.Request == nil {
			b.Fatalf("%s: not an AdmissionReview: %v", path, err)
		}
		requests = append(requests, admission.Request{AdmissionRequest: *review.Request})
	}
	if len(requests) == 0 {
		b.Fatalf("%s: no bodies", path)
	}
	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		b.Fatal(err)
	}
	handler := &imageRewriter{
		decoder:    admission.NewDecoder(scheme),
		registry:   "registry-a0-o0-p0-i2.example.com:5000/mirror",
		pullSecret: "pull-5",
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		response := handler.Handle(context.Background(), requests[i%len(requests)])
		if !response.Allowed || len(response.Patches) == 0 {
			b.Fatalf("the handler did not allow the pod with a patch: %+v", response.Result)
		}
	}
}
