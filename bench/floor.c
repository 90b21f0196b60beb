/* The floor of bench/compare.sh: libpcap reads every packet of a capture and
 * does nothing with it (it only counts packets and bytes, so the loop is not
 * optimised away). */
#include <pcap/pcap.h>
#include <stdio.h>

int main(int argc, char **argv) {
    char err[PCAP_ERRBUF_SIZE];
    struct pcap_pkthdr *h;
    const u_char *data;
    unsigned long long packets = 0, bytes = 0;
    if (argc != 2) {
        fprintf(stderr, "usage: floor FILE\n");
        return 2;
    }
    pcap_t *p = pcap_open_offline(argv[1], err);
    if (!p) {
        fprintf(stderr, "floor: %s\n", err);
        return 1;
    }
    while (pcap_next_ex(p, &h, &data) == 1) {
        packets++;
        bytes += h->caplen;
    }
    pcap_close(p);
    printf("%llu %llu\n", packets, bytes);
    return 0;
}
