# The test image of ptest-docker: busybox alone, built FROM scratch so no registry is needed.
# The context is this file plus a copy of Debian's busybox-static binary (see busybox.rs).
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
# A root-only secret, as every distribution image has: a command at security high or strict
# (uid 65534) must not read it.
RUN ["/bin/busybox", "sh", "-c", "echo 'root:ptest-test-secret:19000:0:99999:7:::' > /etc/shadow && chmod 0640 /etc/shadow"]
ENV PATH=/bin
CMD ["sh"]
