// Command webhook is the Go reference of `make bench`: a minimal mutating admission webhook written
// the way Go teams write one with controller-runtime (its webhook server and admission package, the
// Pod decoded from JSON, images parsed with distribution/reference, the JSON patch computed from the
// marshalled Pod). It does the part of our webhook's work that every chaos pod needs: every container
// image moved to one registry, one pull secret added. It exists only to be measured against.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/distribution/reference"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// imageRewriter moves every image of a pod to `registry` and adds `pullSecret` to the pod.
type imageRewriter struct {
	decoder    admission.Decoder
	registry   string
	pullSecret string
}

func (r *imageRewriter) Handle(_ context.Context, req admission.Request) admission.Response {
	pod := &corev1.Pod{}
	if err := r.decoder.Decode(req, pod); err != nil {
		return admission.Errored(http.StatusBadRequest, err)
	}
	for i := range pod.Spec.InitContainers {
		if err := r.rewrite(&pod.Spec.InitContainers[i].Image); err != nil {
			return admission.Denied(err.Error())
		}
	}
	for i := range pod.Spec.Containers {
		if err := r.rewrite(&pod.Spec.Containers[i].Image); err != nil {
			return admission.Denied(err.Error())
		}
	}
	for i := range pod.Spec.EphemeralContainers {
		if err := r.rewrite(&pod.Spec.EphemeralContainers[i].Image); err != nil {
			return admission.Denied(err.Error())
		}
	}
	if !r.hasPullSecret(pod) {
		pod.Spec.ImagePullSecrets = append(pod.Spec.ImagePullSecrets, corev1.LocalObjectReference{Name: r.pullSecret})
	}
	marshaled, err := json.Marshal(pod)
	if err != nil {
		return admission.Errored(http.StatusInternalServerError, err)
	}
	return admission.PatchResponseFromRaw(req.Object.Raw, marshaled)
}

func (r *imageRewriter) hasPullSecret(pod *corev1.Pod) bool {
	for _, secret := range pod.Spec.ImagePullSecrets {
		if secret.Name == r.pullSecret {
			return true
		}
	}
	return false
}

// rewrite keeps an image's repository path and tag or digest and replaces its registry.
func (r *imageRewriter) rewrite(image *string) error {
	named, err := reference.ParseNormalizedNamed(*image)
	if err != nil {
		return fmt.Errorf("image %q: %w", *image, err)
	}
	moved, err := reference.WithName(r.registry + "/" + reference.Path(named))
	if err != nil {
		return fmt.Errorf("image %q: %w", *image, err)
	}
	var result reference.Named = moved
	if tagged, ok := named.(reference.Tagged); ok {
		if result, err = reference.WithTag(result, tagged.Tag()); err != nil {
			return err
		}
	}
	if digested, ok := named.(reference.Digested); ok {
		if result, err = reference.WithDigest(result, digested.Digest()); err != nil {
			return err
		}
	}
	*image = result.String()
	return nil
}

func main() {
	port := flag.Int("port", 9443, "HTTPS port")
	certFile := flag.String("tls-cert-file", "", "serving certificate (PEM)")
	keyFile := flag.String("tls-key-file", "", "serving key (PEM)")
	path := flag.String("path", "/mutate-pods", "handler path")
	registry := flag.String("registry", "registry.example.com:5000/mirror", "registry every image moves to")
	pullSecret := flag.String("pull-secret", "pull-0", "pull secret every pod gets")
	flag.Parse()

	log.SetLogger(zap.New()) // production settings: info level, JSON lines; nothing per request
	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	server := webhook.NewServer(webhook.Options{
		Host:     "127.0.0.1",
		Port:     *port,
		CertDir:  filepath.Dir(*certFile),
		CertName: filepath.Base(*certFile),
		KeyName:  filepath.Base(*keyFile),
	})
	server.Register(*path, &admission.Webhook{Handler: &imageRewriter{
		decoder:    admission.NewDecoder(scheme),
		registry:   *registry,
		pullSecret: *pullSecret,
	}})
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	fmt.Printf("listening on https://127.0.0.1:%d%s\n", *port, *path)
	if err := server.Start(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
