// One HTTPS GET with Go's net/http, trusting what Go finds in the system trust store.
package main

import (
	"fmt"
	"net/http"
	"os"
)

func main() {
	response, err := http.Get(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	response.Body.Close()
	fmt.Println(response.StatusCode)
}
